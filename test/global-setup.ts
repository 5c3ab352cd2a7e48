export default async function globalSetup(): Promise<void> {
  throw new Error('integration harness not built yet');
}
