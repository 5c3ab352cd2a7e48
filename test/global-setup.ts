/**
 * Integration-test harness (jest `globalSetup` of the `integration` project): one ephemeral
 * Temporal dev server (in-memory, headless, our search attributes registered) and one FerretDB
 * (SQLite files in a temp dir) per run. Their addresses go into process.env, which the test
 * workers inherit:
 *
 * - TEMPORAL_ADDRESS (`127.0.0.1:<port>`, namespace `default`) and TEMPORAL_NAMESPACE
 * - MONGODB_URI (`mongodb://127.0.0.1:<port>/`)
 * - TEMPORAL_CLI_PATH: the cached CLI binary, for a test that needs its own server:
 *   `TestWorkflowEnvironment.createLocal({ server: { executable: { type: 'existing-path', path } } })`
 *
 * Quiet unless a binary has to be built first. KEEP_TEST_SERVERS=1 prints the addresses and
 * leaves both servers (and their temp dir, logs included) running after the run for inspection;
 * the teardown then prints how to stop them.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ensureBinaries } from '../tools/infra/binaries';
import { startFerretDb, startTemporalDevServer, type FerretDb, type TemporalDevServer } from '../tools/infra/servers';
import { SEARCH_ATTRIBUTES } from '../workflows/contracts';

export interface TestServers {
  temporal: TemporalDevServer;
  ferretdb: FerretDb;
  /** Logs and FerretDB's SQLite files. */
  tmpDir: string;
}

declare global {
  // Shared with global-teardown.ts (same process).
  var __coexistRelayTestServers: TestServers | undefined;
}

export default async function globalSetup(): Promise<void> {
  const keep = process.env.KEEP_TEST_SERVERS === '1';
  const { temporal: temporalCli, ferretdb: ferretdbBin } = await ensureBinaries();
  const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'coexist-relay-test-'));
  let ferretdb: FerretDb | undefined;
  let temporal: TemporalDevServer | undefined;
  try {
    // One after the other: each picks free ports, and start-dev picks several of its own.
    ferretdb = await startFerretDb({ binary: ferretdbBin, sqliteDir: path.join(tmpDir, 'ferretdb'), logDir: tmpDir });
    temporal = await startTemporalDevServer({
      binary: temporalCli,
      logDir: tmpDir,
      namespace: 'default',
      searchAttributes: SEARCH_ATTRIBUTES,
    });
  } catch (err) {
    await Promise.allSettled([temporal?.stop(), ferretdb?.stop()]);
    fs.rmSync(tmpDir, { recursive: true, force: true });
    throw err;
  }

  process.env.TEMPORAL_ADDRESS = temporal.address;
  process.env.TEMPORAL_NAMESPACE = temporal.namespace;
  process.env.MONGODB_URI = ferretdb.uri;
  process.env.TEMPORAL_CLI_PATH = temporalCli;
  globalThis.__coexistRelayTestServers = { temporal, ferretdb, tmpDir };

  if (keep) {
    process.stderr.write(
      `\n[test servers] Temporal ${temporal.address} (pid ${temporal.pid}), FerretDB ${ferretdb.uri} (pid ${ferretdb.pid}); logs in ${tmpDir}\n`,
    );
  }
}
