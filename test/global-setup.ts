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
 * - TEST_SERVER_PIDS: `<temporal pid>,<ferretdb pid>`, for a test that measures the stack's memory
 *
 * FerretDB runs with the wrapper's default SQLite `synchronous=NORMAL`, as `npm run dev` does;
 * `DEV_SQLITE_SYNCHRONOUS=full` (read here too) runs the tests with an fsync per commit.
 *
 * Quiet unless a binary has to be built first. KEEP_TEST_SERVERS=1 prints the addresses and
 * leaves both servers (and their temp dir, logs included) running after the run for inspection;
 * the teardown then prints how to stop them.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseSqliteSynchronous } from '../tools/infra/servers';
import { startInfra, type Infra } from '../tools/stack';

export interface TestServers {
  infra: Infra;
  /** Logs and FerretDB's SQLite files. */
  tmpDir: string;
}

declare global {
  // Shared with global-teardown.ts (same process).
  var __coexistRelayTestServers: TestServers | undefined;
}

export default async function globalSetup(): Promise<void> {
  const keep = process.env.KEEP_TEST_SERVERS === '1';
  const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'coexist-relay-test-'));
  let infra: Infra;
  try {
    const synchronous = parseSqliteSynchronous(process.env.DEV_SQLITE_SYNCHRONOUS, 'DEV_SQLITE_SYNCHRONOUS');
    infra = await startInfra({ dir: tmpDir, ...(synchronous ? { ferretdbSynchronous: synchronous } : {}) });
  } catch (err) {
    fs.rmSync(tmpDir, { recursive: true, force: true });
    throw err;
  }

  process.env.TEMPORAL_ADDRESS = infra.temporalAddress;
  process.env.TEMPORAL_NAMESPACE = infra.temporalNamespace;
  process.env.MONGODB_URI = infra.mongoUri;
  process.env.TEMPORAL_CLI_PATH = infra.temporalCli;
  process.env.TEST_SERVER_PIDS = [infra.temporal?.pid, infra.ferretdb?.pid].filter((p) => p !== undefined).join(',');
  globalThis.__coexistRelayTestServers = { infra, tmpDir };

  if (keep) {
    process.stderr.write(
      `\n[test servers] Temporal ${infra.temporalAddress} (pid ${infra.temporal?.pid}), FerretDB ${infra.mongoUri} (pid ${infra.ferretdb?.pid}); logs in ${tmpDir}\n`,
    );
  }
}
