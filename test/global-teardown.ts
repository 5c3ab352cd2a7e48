/**
 * Stops the servers of global-setup.ts and removes their temp dir; runs whether tests passed or
 * failed. With KEEP_TEST_SERVERS=1 the servers are left running (and their pids printed).
 */
import * as fs from 'node:fs';
import type { TestServers } from './global-setup';

export default async function globalTeardown(): Promise<void> {
  const servers: TestServers | undefined = globalThis.__coexistRelayTestServers;
  if (!servers) return;
  globalThis.__coexistRelayTestServers = undefined;
  const { infra, tmpDir } = servers;

  if (process.env.KEEP_TEST_SERVERS === '1') {
    infra.temporal?.disown();
    infra.ferretdb?.disown();
    process.stderr.write(
      `[test servers] left running: TEMPORAL_ADDRESS=${infra.temporalAddress} MONGODB_URI=${infra.mongoUri}\n` +
        `[test servers] logs: ${tmpDir}; stop with: kill ${infra.temporal?.pid} ${infra.ferretdb?.pid} && rm -rf ${tmpDir}\n`,
    );
    return;
  }

  await infra.stop();
  fs.rmSync(tmpDir, { recursive: true, force: true });
}
