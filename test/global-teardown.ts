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
  const { temporal, ferretdb, tmpDir } = servers;

  if (process.env.KEEP_TEST_SERVERS === '1') {
    temporal.disown();
    ferretdb.disown();
    process.stderr.write(
      `[test servers] left running: TEMPORAL_ADDRESS=${temporal.address} MONGODB_URI=${ferretdb.uri}\n` +
        `[test servers] logs: ${tmpDir}; stop with: kill ${temporal.pid} ${ferretdb.pid} && rm -rf ${tmpDir}\n`,
    );
    return;
  }

  const results = await Promise.allSettled([temporal.stop(), ferretdb.stop()]);
  fs.rmSync(tmpDir, { recursive: true, force: true });
  const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed.length > 0)
    throw new Error(`stopping the test servers failed: ${failed.map((f) => String(f.reason)).join('; ')}`);
}
