import { spawnWatched } from '../support/child';
import { freePort, groupAlive } from '../support/delivery';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * Ctrl-C on `npm run dev`: the terminal sends SIGINT to the whole foreground process group (npm,
 * tsx, the launcher, the Temporal dev server and FerretDB), and npm and tsx relay it once more.
 * The stack must stop cleanly: exit code 0, no error or stack trace, no process left behind.
 * It starts its own Temporal and FerretDB (data in a temp dir, free ports), hence ~20-40 s.
 */
const ROOT = path.join(__dirname, '../..');

describe('npm run dev', () => {
  let dataDir: string;
  beforeAll(() => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dev-shutdown-'));
  });
  afterAll(() => {
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('stops every process on Ctrl-C (SIGINT to the process group) with exit code 0 and no error', async () => {
    // The dev stack starts its own servers: drop the ones the integration setup exported.
    const env: Record<string, string | undefined> = { ...process.env };
    for (const k of ['TEMPORAL_ADDRESS', 'TEMPORAL_NAMESPACE', 'MONGODB_URI', 'GRAPH_API_BASE_URL']) delete env[k];
    Object.assign(env, {
      DEV_DATA_DIR: dataDir,
      DEV_TEMPORAL_PORT: String(await freePort()),
      DEV_TEMPORAL_UI_PORT: String(await freePort()),
      DEV_FERRETDB_PORT: String(await freePort()),
      DEV_META_SIM_PORT: String(await freePort()),
      PORT: '0',
    });
    // Its own process group, as a terminal's foreground job.
    const dev = spawnWatched('npm', ['run', 'dev'], { cwd: ROOT, env, detached: true });
    const { child, exited } = dev;
    const pgid = child.pid!;
    try {
      await dev.ready(/dev stack is up/, 90_000);
      const signalled = Date.now();
      process.kill(-pgid, 'SIGINT');
      const result = await exited;
      // npm returns when its child does; the launcher's own children may take a moment more.
      const goneBy = Date.now() + 10_000;
      while (groupAlive(pgid) && Date.now() < goneBy) await new Promise((r) => setTimeout(r, 100));

      // The launcher exits 0 after "stopped", and npm with it. (The launcher runs under plain
      // `node --import tsx`: tsx's CLI, when its child does not confirm a relayed SIGINT within
      // 30 ms, as on a saturated machine, SIGKILLs it and exits 130.)
      expect(result.signal).toBeNull();
      expect(result.code).toBe(0);
      expect(dev.output()).toContain('stopped');
      expect(dev.output()).not.toMatch(/Error|\n\s+at /);
      expect(groupAlive(pgid)).toBe(false);
      // Bounded: well within the worker's shutdown force time (25 s).
      expect(Date.now() - signalled).toBeLessThan(25_000);
    } finally {
      if (groupAlive(pgid)) process.kill(-pgid, 'SIGKILL');
    }
  });
});
