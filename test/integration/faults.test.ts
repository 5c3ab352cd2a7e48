import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ensureBinaries } from '../../tools/infra/binaries';
import {
  startFerretDb,
  startTemporalDevServer,
  type FerretDb,
  type TemporalDevServer,
} from '../../tools/infra/servers';
import { spawnMetaSimulator, type MetaSimulatorProcess } from '../../tools/meta-sim/process';
import { startInfra, startService, type Infra, type Service } from '../../tools/stack';
import { SEARCH_ATTRIBUTES } from '../../src/contracts';
import { spawnWatched, type WatchedChild } from '../support/child';
import { expectDelivered, freePort } from '../support/delivery';
import { eventually, uniqueDigits } from '../support/stack';

/**
 * Faults in the middle of a drain, on the deployment's topology: the API and the outbox relay in
 * this process, two workers as child processes (`src/worker-main.ts`), one Temporal dev server on
 * a persistent db file and one FerretDB, both this file's own (so they can be stopped, killed and
 * restarted on the same data and ports without touching the other tests' servers). The Meta
 * simulator runs in a process of its own (tools/meta-sim/process.ts) and judges the cap at arrival
 * on a strict 1,000 ms sliding window, over every send that arrived.
 *
 * Each case: 120 messages over 12 recipients queued while offboarded, the reconnection, the fault
 * once 30 have arrived, then: nothing lost, each recipient's order kept, the cap never exceeded at
 * the receiver (no second with more than the cap arriving, no 130429), both workers still running,
 * duplicates reported (only sends truly in flight may repeat).
 */

const CAP = 20;
const QUEUED = 120;
const RECIPIENTS = 12;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('faults mid-drain (two worker processes, own Temporal and FerretDB)', () => {
  let dir: string;
  let infra: Infra;
  let temporal: TemporalDevServer;
  let ferretdb: FerretDb;
  let svc: Service;
  let sim: MetaSimulatorProcess;
  let workers: WatchedChild[] = [];
  let bins: { temporal: string; ferretdb: string };

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coexist-relay-faults-'));
    bins = await ensureBinaries({ log: () => undefined });
    infra = await startInfra({
      dir,
      temporalDbFile: path.join(dir, 'temporal.db'),
      temporalPort: await freePort(),
      ferretdbPort: await freePort(),
    });
    temporal = infra.temporal!;
    ferretdb = infra.ferretdb!;
    sim = await spawnMetaSimulator();
    svc = await startService({
      temporalAddress: infra.temporalAddress,
      mongoUri: infra.mongoUri,
      prefix: 'faults',
      noWorker: true,
      logLevel: 'silent',
      env: {
        GRAPH_API_BASE_URL: sim.url,
        PAIR_LIMIT_INTERVAL_MS: '0',
        GATE_PROBE_INTERVAL: '0',
        IN_DOUBT_GRACE_MS: '2000',
      },
    });
    workers = [0, 1].map(() =>
      spawnWatched(process.execPath, ['--import', 'tsx', 'src/worker-main.ts'], {
        cwd: path.join(__dirname, '../..'),
        env: { ...process.env, ...svc.env, LOG_LEVEL: 'warn' },
      }),
    );
    // Both polling: a lifecycle cycle of a throwaway WABA completes.
    await sleep(3_000);
  }, 180_000);

  afterAll(async () => {
    for (const w of workers) w.child.kill('SIGKILL');
    await Promise.all(workers.map((w) => w.exited));
    // A stalled server left stopped by a failed case must resume to be stopped.
    for (const p of [temporal, ferretdb]) if (p) process.kill(p.pid, 'SIGCONT');
    await svc?.stop();
    await Promise.allSettled([temporal?.stop(), ferretdb?.stop(), sim?.stop()]);
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  /** Queues QUEUED messages while offboarded, reconnects, runs `fault` once 30 have arrived. */
  async function drainThrough(name: string, fault: () => Promise<void>): Promise<void> {
    const wabaId = uniqueDigits();
    const phone = uniqueDigits('4');
    await svc.register(phone, wabaId, { mps: CAP });
    await sim.setNumber(phone, { throughputPerSec: CAP });
    expect(await svc.accountUpdate(wabaId, 'ACCOUNT_OFFBOARDED')).toBe(200);
    await eventually(async () => (await svc.rt.c.wabas.findOne({ _id: wabaId }))?.state === 'offboarded', 60_000);
    const queued: { id: string; to: string }[] = [];
    for (let i = 0; i < QUEUED; i++) {
      const to = `1555600${String(i % RECIPIENTS).padStart(4, '0')}`;
      const r = await svc.call(svc.sendKey, 'POST', '/v1/messages', {
        phoneNumberId: phone,
        to,
        type: 'text',
        text: { body: `${name}-${i}` },
      });
      expect(r.status).toBe(202);
      queued.push({ id: r.json.id as string, to });
    }
    expect(await svc.accountUpdate(wabaId, 'ACCOUNT_RECONNECTED')).toBe(200);
    const accepted = async () => (await sim.log(phone)).accepted;
    await eventually(async () => (await sim.receiverStats(phone)).accepted >= 30, 90_000, 20);
    const atFault = (await accepted()).length;
    await fault();

    await eventually(async () => new Set((await accepted()).map((m) => m.clientId)).size >= QUEUED, 240_000, 500);
    const stats = await sim.receiverStats(phone);
    const arrivals = (await accepted()).map((m) => m.clientId);
    const unique = new Set(arrivals);
    console.log(
      `faults ${name} at ${atFault} accepted: unique ${unique.size}, duplicates ${stats.duplicates} ` +
        `(${stats.duplicateIds.join(', ')}), at most ${stats.maxAttemptsPerWindow} sends arrived in any 1,000 ms (cap ${CAP}), ` +
        `130429 × ${stats.throttled}`,
    );
    expectDelivered(queued, stats.byRecipient, arrivals);
    expect(stats.duplicates).toBeLessThanOrEqual(5); // only sends in flight at the fault
    // The cap where Meta judges it: every send that arrived, the refused ones too, and no 130429.
    expect(stats.maxAttemptsPerWindow).toBeLessThanOrEqual(CAP);
    expect(stats.throttled).toBe(0);
    // Every message settled sent, and both workers survived.
    await eventually(
      async () => {
        const views = await Promise.all(queued.map((m) => svc.call(svc.sendKey, 'GET', `/v1/messages/${m.id}`)));
        return views.every((v) => v.json.status === 'sent');
      },
      120_000,
      1_000,
    );
    for (const w of workers) expect(w.child.exitCode).toBeNull();
  }

  it('the database stalled for 60 s (SIGSTOP), then resumed', async () => {
    await drainThrough('db-stall', async () => {
      process.kill(ferretdb.pid, 'SIGSTOP');
      await sleep(60_000);
      process.kill(ferretdb.pid, 'SIGCONT');
    });
  }, 420_000);

  it('the database killed (SIGKILL) and restarted on the same files and port', async () => {
    await drainThrough('db-kill', async () => {
      process.kill(ferretdb.pid, 'SIGKILL');
      await ferretdb.stop();
      await sleep(3_000);
      ferretdb = await startFerretDb({
        binary: bins.ferretdb,
        sqliteDir: ferretdb.sqliteDir,
        logDir: dir,
        port: ferretdb.port,
      });
    });
  }, 420_000);

  it('Temporal stalled for 15 s (SIGSTOP), then killed (SIGKILL) and restarted on the same db file and port', async () => {
    await drainThrough('temporal', async () => {
      process.kill(temporal.pid, 'SIGSTOP');
      await sleep(15_000);
      process.kill(temporal.pid, 'SIGCONT');
      await sleep(2_000);
      process.kill(temporal.pid, 'SIGKILL');
      await temporal.stop();
      temporal = await startTemporalDevServer({
        binary: bins.temporal,
        logDir: dir,
        port: temporal.port,
        dbFile: temporal.dbFile!,
        namespace: 'default',
        searchAttributes: SEARCH_ATTRIBUTES,
      });
    });
  }, 420_000);
});
