import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { accountUpdatePayload } from '../../tools/meta-sim/payloads';
import { sendWebhook, startMetaSimulator, type MetaSimulator } from '../../tools/meta-sim/server';
import { spawnWatched, type WatchedChild } from '../support/child';
import { expectDelivered, freePort, groupAlive } from '../support/delivery';
import { eventually, uniqueDigits } from '../support/stack';

/**
 * A power cut mid-drain: `npm run dev` (Temporal on its db file, FerretDB, the worker and the API
 * in one launcher) is SIGKILLed as a whole process group once 30 of 120 queued messages have
 * arrived, then `npm run dev` starts again on the same data dir and ports. The Meta simulator runs
 * in this process (GRAPH_API_BASE_URL), so the receiver's record outlives the cut. Asserted at the
 * receiver: nothing lost, each recipient's order, the cap (every send that arrived, no 130429), only
 * sends in flight at the cut repeated.
 */
const ROOT = path.join(__dirname, '../..');
const CAP = 20;
const QUEUED = 120;
const RECIPIENTS = 12;
const APP_SECRET = 'dev-app-secret';
const OPS = { authorization: 'Bearer dev-ops-key', 'content-type': 'application/json' };
const SEND = { authorization: 'Bearer dev-send-key', 'content-type': 'application/json' };

describe('a power cut of the whole dev stack mid-drain, then npm run dev on the same data', () => {
  let dataDir: string;
  let sim: MetaSimulator;
  let env: Record<string, string | undefined>;
  let dev: WatchedChild | undefined;
  let api: string;

  async function startDev(): Promise<WatchedChild> {
    const d = spawnWatched('npm', ['run', 'dev'], { cwd: ROOT, env, detached: true });
    await d.ready(/dev stack is up/, 120_000);
    return d;
  }
  async function killGroup(d: WatchedChild, signal: NodeJS.Signals): Promise<void> {
    const pgid = d.child.pid!;
    if (groupAlive(pgid)) process.kill(-pgid, signal);
    const goneBy = Date.now() + 30_000;
    while (groupAlive(pgid) && Date.now() < goneBy) await new Promise((r) => setTimeout(r, 100));
    if (groupAlive(pgid)) process.kill(-pgid, 'SIGKILL');
    await d.exited;
  }

  beforeAll(async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'power-cut-'));
    sim = await startMetaSimulator({ defaults: { latencyMs: 20 } });
    const port = await freePort();
    env = { ...process.env };
    for (const k of ['TEMPORAL_ADDRESS', 'TEMPORAL_NAMESPACE', 'MONGODB_URI']) delete env[k];
    Object.assign(env, {
      DEV_DATA_DIR: dataDir,
      DEV_TEMPORAL_PORT: String(await freePort()),
      DEV_TEMPORAL_UI_PORT: String(await freePort()),
      DEV_FERRETDB_PORT: String(await freePort()),
      GRAPH_API_BASE_URL: sim.url,
      PORT: String(port),
      PAIR_LIMIT_INTERVAL_MS: '0',
      GATE_PROBE_INTERVAL: '0',
      IN_DOUBT_GRACE_MS: '2000',
      LOG_LEVEL: 'warn',
    });
    api = `http://127.0.0.1:${port}`;
  }, 60_000);

  afterAll(async () => {
    if (dev) await killGroup(dev, 'SIGINT');
    await sim?.stop();
    if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
  }, 60_000);

  /**
   * Where the busiest 1,000 ms at the receiver was, for the log: its arrivals as ms from its first
   * (`busiestWindow`, accepted and refused), and its start against the cut and the restart.
   */
  function describeBusiest(busiest: number[], cutAt: number, restartedAt: number): string {
    const start = busiest[0] ?? 0;
    return (
      `busiest second: ${busiest.length} arrivals at +${busiest.map((t) => Math.round(t - start)).join(', +')} ms, ` +
      `starting ${Math.round(start - cutAt)} ms after the cut (the restarted stack answered ${Math.round(restartedAt - cutAt)} ms after it)`
    );
  }

  it('loses nothing: the restarted stack finishes the drain in order, within the cap', async () => {
    dev = await startDev();
    const wabaId = uniqueDigits();
    const phone = uniqueDigits('4');
    sim.setNumber(phone, { throughputPerSec: CAP });
    const reg = await fetch(`${api}/v1/phone-numbers/${phone}`, {
      method: 'PUT',
      headers: OPS,
      body: JSON.stringify({ wabaId, mps: CAP }),
    });
    expect(reg.status).toBe(201);
    const webhook = (event: 'ACCOUNT_OFFBOARDED' | 'ACCOUNT_RECONNECTED', time: number) =>
      sendWebhook({
        targetUrl: `${api}/webhooks/meta`,
        appSecret: APP_SECRET,
        body: accountUpdatePayload(wabaId, event, { time }),
      });
    const time = Math.floor(Date.now() / 1000);
    expect((await webhook('ACCOUNT_OFFBOARDED', time)).status).toBe(200);
    await eventually(async () => {
      const r = await fetch(`${api}/v1/wabas/${wabaId}`, { headers: OPS });
      return r.status === 200 && ((await r.json()) as { state: string }).state === 'offboarded';
    }, 60_000);
    const queued: { id: string; to: string }[] = [];
    for (let i = 0; i < QUEUED; i++) {
      const to = `1555700${String(i % RECIPIENTS).padStart(4, '0')}`;
      const r = await fetch(`${api}/v1/messages`, {
        method: 'POST',
        headers: SEND,
        body: JSON.stringify({ phoneNumberId: phone, to, type: 'text', text: { body: `cut-${i}` } }),
      });
      expect(r.status).toBe(202);
      queued.push({ id: ((await r.json()) as { id: string }).id, to });
    }
    expect((await webhook('ACCOUNT_RECONNECTED', time + 1)).status).toBe(200);
    const accepted = () => sim.log.accepted.filter((m) => m.phoneNumberId === phone);
    await eventually(async () => accepted().length >= 30, 90_000, 10);

    // The cut: every process of the stack at once.
    await killGroup(dev, 'SIGKILL');
    const atCut = accepted().length;
    const cutAt = performance.timeOrigin + performance.now(); // the simulator's arrival clock
    dev = await startDev();
    const restartedAt = performance.timeOrigin + performance.now();

    await eventually(async () => new Set(accepted().map((m) => m.clientId)).size >= QUEUED, 240_000, 500);
    const stats = sim.receiverStats(phone);
    const unique = new Set(accepted().map((m) => m.clientId));
    console.log(
      `power cut at ${atCut} accepted: unique ${unique.size}, duplicates ${stats.duplicates} ` +
        `(${stats.duplicateIds.join(', ')}), at most ${stats.maxAttemptsPerWindow} sends arrived in any 1,000 ms (cap ${CAP}), ` +
        `130429 × ${stats.throttled}; ${describeBusiest(stats.busiestWindow, cutAt, restartedAt)}`,
    );
    expectDelivered(
      queued,
      stats.byRecipient,
      accepted().map((m) => m.clientId),
    );
    expect(stats.duplicates).toBeLessThanOrEqual(5);
    // The cap where Meta judges it, across the cut: every send that arrived, and no 130429.
    expect(stats.maxAttemptsPerWindow).toBeLessThanOrEqual(CAP);
    expect(stats.throttled).toBe(0);
    await eventually(
      async () => {
        const views = await Promise.all(
          queued.map(
            async (m) =>
              (await (await fetch(`${api}/v1/messages/${m.id}`, { headers: SEND })).json()) as { status: string },
          ),
        );
        return views.every((v) => v.status === 'sent');
      },
      120_000,
      1_000,
    );
  }, 600_000);
});
