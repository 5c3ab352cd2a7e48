/** Entry point of the HTTP server process (`npm run server`): config from the environment. */
import { boot, onShutdown } from './boot';
import { connectRuntime } from './runtime';
import { startServer } from './server';

async function main(): Promise<void> {
  const { config, logger } = boot('coexist-relay-server');
  const rt = await connectRuntime(config);
  const http = await startServer({ config, logger, c: rt.c, launch: rt.launch, readiness: rt.readiness });
  logger.info({ url: http.url, webhook: http.url + config.webhook.path }, 'server listening');
  onShutdown(logger, async () => {
    await http.close();
    await rt.close();
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`coexist-relay-server: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
