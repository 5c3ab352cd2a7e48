import fs from 'node:fs';
import path from 'node:path';
import { parseWebhookBody } from '../../src/adapters/meta/webhook-payload';
import { readGateHold } from '../../src/lifecycle/gate-holds.store';
import { gateVerdict } from '../../src/sending/admission';
import { sendWebhook } from '../../tools/meta-sim/server';
import { spawnWatched, type WatchedChild } from '../support/child';
import { eventually, startStack, uniqueDigits, type Stack } from '../support/stack';

/**
 * Issue #11's overload: large signed `account_update` batches, 16 at a time, against the real
 * stack. The server (the Koa app and the outbox relay) runs as `npm run server` runs it, in a child
 * process with the production heap limit, so its memory is its own; the worker runs in this
 * process; Temporal and FerretDB are the shared test servers. Sized for 2 cores by
 * OVERLOAD_DELIVERIES × OVERLOAD_ENTRIES.
 *
 * Issue #21 item 10 (fairness): HEAVY of the deliveries carry ENTRIES lifecycle events for one
 * WABA each (a WABA whose closure Meta repeats), so the relay still has minutes of one WABA's
 * hand-overs (one after the other, in order) when a fresh WABA's offboarding arrives; that one
 * must be applied by its workflow within seconds, and the whole stack (server, worker, Temporal,
 * FerretDB) must stay within its memory budget throughout.
 */
const DELIVERIES = Number(process.env.OVERLOAD_DELIVERIES ?? 200);
// Issue #11's size: 3,000 entries (about 0.5 MB) per delivery, 600,000 in all (about 60 s here).
const ENTRIES = Number(process.env.OVERLOAD_ENTRIES ?? 3000);
const CONCURRENCY = 16;
/** The server's heap limit, as package.json's `server` and `start:server` scripts set it. */
const HEAP_LIMIT_MB = 1024;
/** Peak resident memory (VmHWM) of the server process under the overload (measured: 326 MB at 200 × 3,000). */
const RSS_CEILING_MB = 512;
/** The longest log line the server may write under the overload (issue #11: counts and a few ids). */
const LOG_LINE_CEILING = 4_096;
/**
 * The gate closes at the ack (a gate hold); the workflow applies the offboarding once the relay
 * has handed it over. The relay gives each WABA turns of at most 32 events, 16 WABAs at once, so
 * the fresh WABA's event waits for at most one turn per WABA ahead of it (here a free slot: only
 * the two heavy WABAs have work left), then one signal-with-start and the run's first steps:
 * measured 0.6–3.3 s in a smaller run (two heavy WABAs, then 40 fresh 3,000-entry deliveries
 * just before it, the machine's load average at 9–13; 1.4–1.8 s with the final pacing). At
 * e617ea6 (whole deliveries first come, first served) it waited for all 6,000 heavy hand-overs:
 * not applied within 200 s.
 */
const FRESH_OFFBOARDING_MS = 10_000;
/** Deliveries (after the first) whose ENTRIES entries are all lifecycle events of one WABA. */
const HEAVY = 2;
/** Peak of the whole stack's resident memory (sampled sum of the four processes' RSS): issue #21. */
const STACK_RSS_CEILING_MB = 1536;

/**
 * One delivery: an ACCOUNT_OFFBOARDED for its WABA, then ENTRIES - 1 informational changes, or
 * (`heavy`) ENTRIES - 1 more ACCOUNT_OFFBOARDED of the same WABA (Meta's later times: the open run
 * joins each, so each is a hand-over and a workflow step).
 */
function delivery(wabaId: string, time: number, heavy = false) {
  return {
    object: 'whatsapp_business_account',
    entry: [
      { id: wabaId, time, changes: [{ field: 'account_update', value: { event: 'ACCOUNT_OFFBOARDED' } }] },
      ...Array.from({ length: ENTRIES - 1 }, (_, i) => ({
        id: wabaId,
        time: time + 1 + i,
        changes: [
          heavy
            ? { field: 'account_update', value: { event: 'ACCOUNT_OFFBOARDED' } }
            : {
                field: 'account_update',
                value: { event: 'ACCOUNT_VIOLATION', violation_info: { violation_type: 'SPAM' } },
              },
        ],
      })),
    ],
  };
}
const isHeavy = (i: number) => i >= 1 && i <= HEAVY;

/** Resident memory of a process, in MB: `VmRSS` now, or `VmHWM` (its peak so far); 0 once it is gone. */
function rssMb(pid: number, field: 'VmRSS' | 'VmHWM' = 'VmRSS'): number {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) / 1024;
  } catch {
    return 0;
  }
}

describe(`overload: ${DELIVERIES} deliveries of ${ENTRIES} account_update entries, ${CONCURRENCY} at a time`, () => {
  let stack: Stack;
  let server: WatchedChild;
  let webhookUrl: string;
  /** The stack's processes: this one (the worker), the server, Temporal and FerretDB. */
  let pids: number[] = [];
  let stackPeakMb = 0;
  let sampler: NodeJS.Timeout | undefined;
  beforeAll(async () => {
    // The worker here; the relay and the app in the child below, on the same task queue and database.
    stack = await startStack({ noRelay: true });
    server = spawnWatched(
      process.execPath,
      [`--max-old-space-size=${HEAP_LIMIT_MB}`, '--import', 'tsx', 'src/server-main.ts'],
      { cwd: path.join(__dirname, '../..'), env: { ...process.env, ...stack.env, PORT: '0', LOG_LEVEL: 'info' } },
    );
    await server.ready(/"msg":"server listening"/, 60_000);
    const listening = server
      .output()
      .split('\n')
      .find((l) => l.includes('"msg":"server listening"'))!;
    webhookUrl = (JSON.parse(listening) as { webhook: string }).webhook;
    const servers = (process.env.TEST_SERVER_PIDS ?? '').split(',').filter(Boolean).map(Number);
    expect(servers).toHaveLength(2);
    pids = [process.pid, server.child.pid!, ...servers];
    sampler = setInterval(() => {
      stackPeakMb = Math.max(
        stackPeakMb,
        pids.reduce((sum, pid) => sum + rssMb(pid), 0),
      );
    }, 200);
  });
  afterAll(async () => {
    clearInterval(sampler);
    process.stderr.write(`overload: stack peak RSS ${Math.round(stackPeakMb)} MB at the end\n`);
    server?.child.kill('SIGKILL');
    await server?.exited;
    await stack?.stop();
  });

  /** Peak resident set of the server process so far, in MB (Linux keeps the high-water mark). */
  function serverPeakRssMb(): number {
    const status = fs.readFileSync(`/proc/${server.child.pid}/status`, 'utf8');
    return Number(/^VmHWM:\s+(\d+) kB/m.exec(status)![1]) / 1024;
  }

  it("answers every request within 10 s (p99), stays under the memory ceilings (server, whole stack), closes a fresh WABA's offboarding's gate at the ack and applies it within seconds behind another WABA's backlog, and applies every shed delivery exactly once when redelivered", async () => {
    const time = Math.floor(Date.now() / 1000) - 100_000;
    const wabas = Array.from({ length: DELIVERIES }, () => uniqueDigits());
    const latencies: number[] = [];
    const shed: number[] = [];
    const errors: string[] = [];
    const statuses = new Map<number, number>();
    let next = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        for (let i = next++; i < DELIVERIES; i = next++) {
          const started = Date.now();
          const r = await sendWebhook({
            targetUrl: webhookUrl,
            appSecret: stack.appSecret,
            body: delivery(wabas[i]!, time, isHeavy(i)) as never,
            timeoutMs: 30_000,
          }).catch((err: unknown) => {
            errors.push(String((err as { cause?: unknown }).cause ?? err));
            return { status: 0 };
          });
          latencies.push(Date.now() - started);
          statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
          if (r.status !== 200) shed.push(i);
        }
      }),
    );
    latencies.sort((a, b) => a - b);
    const p99 = latencies[Math.ceil(latencies.length * 0.99) - 1]!;
    process.stderr.write(
      `overload: ${DELIVERIES} × ${ENTRIES}: statuses ${JSON.stringify(Object.fromEntries(statuses))}, ` +
        `p50 ${latencies[Math.floor(latencies.length / 2)]} ms, p99 ${p99} ms, server peak RSS ${Math.round(serverPeakRssMb())} MB, errors ${errors.length} ${errors.slice(0, 3).join('; ')}\n`,
    );
    expect(latencies).toHaveLength(DELIVERIES);
    expect(p99).toBeLessThanOrEqual(10_000);
    // 0: the connection was closed before an answer (a shed delivery whose body was still being
    // sent); Meta treats it as a failure and redelivers, as below.
    expect([...statuses.keys()].every((s) => s === 200 || s === 503 || s === 0)).toBe(true);
    expect((await fetch(new URL('/healthz', webhookUrl))).status).toBe(200);

    // A fresh WABA's offboarding right after, while the heavy WABAs' hand-overs still run, is
    // applied by its workflow within seconds.
    const normal = uniqueDigits();
    const t = Date.now();
    const single = {
      object: 'whatsapp_business_account',
      entry: [
        {
          id: normal,
          time: Math.floor(Date.now() / 1000),
          changes: [{ field: 'account_update', value: { event: 'ACCOUNT_OFFBOARDED' } }],
        },
      ],
    };
    expect(
      (await sendWebhook({ targetUrl: webhookUrl, appSecret: stack.appSecret, body: single as never })).status,
    ).toBe(200);
    // Closed from the ack on: its sends queue at once, whatever the relay's backlog.
    const hold = await readGateHold(stack.rt.c, normal);
    const state = (await stack.rt.c.wabas.findOne({ _id: normal }))?.state;
    expect(gateVerdict(normal, state, 'fail', hold !== null).kind).toBe('queue');
    await eventually(
      async () => (await stack.rt.c.wabas.findOne({ _id: normal }))?.state === 'offboarded',
      FRESH_OFFBOARDING_MS,
      100,
    );
    const applied = Date.now() - t;
    // Whether each heavy WABA's last event was handed over by then (its audit, by `_id`).
    const heavyDone = await Promise.all(
      [...wabas.keys()].filter(isHeavy).map(async (i) => {
        const keys = parseWebhookBody(delivery(wabas[i]!, time, true)).accountUpdates.map((u) => u.key);
        return (await stack.rt.c.accountEvents.countDocuments({ _id: keys[keys.length - 1]! })) === 1;
      }),
    );
    process.stderr.write(
      `overload: a fresh offboarding applied ${applied} ms after it was sent; heavy backlogs done by then: ${heavyDone.join(', ')}\n`,
    );

    // Meta redelivers every shed delivery until it is answered 200.
    for (const i of shed) {
      await eventually(
        async () =>
          (
            await sendWebhook({
              targetUrl: webhookUrl,
              appSecret: stack.appSecret,
              body: delivery(wabas[i]!, time, isHeavy(i)) as never,
              timeoutMs: 30_000,
            })
          ).status === 200,
        60_000,
        500,
      );
    }
    // Alive (never restarted: the same pid answered throughout) and within its memory.
    expect(server.child.exitCode).toBeNull();
    expect(serverPeakRssMb()).toBeLessThan(RSS_CEILING_MB);
    const longest = Math.max(
      ...server
        .output()
        .split('\n')
        .map((l) => l.length),
    );
    expect(longest).toBeLessThan(LOG_LINE_CEILING);

    const peaks = pids.map((pid) => Math.round(rssMb(pid, 'VmHWM')));
    process.stderr.write(
      `overload: stack peak RSS ${Math.round(stackPeakMb)} MB (sampled sum); per-process peaks (test+worker, server, Temporal, FerretDB) ${peaks.join(', ')} MB\n`,
    );
    expect(stackPeakMb).toBeLessThanOrEqual(STACK_RSS_CEILING_MB);

    // Every delivery's offboarding applied exactly once (shed ones included); the relay audits the
    // informational entries afterwards, first delivery first.
    for (const w of wabas) {
      await eventually(async () => (await stack.rt.c.wabas.findOne({ _id: w }))?.state === 'offboarded', 60_000, 250);
    }
    for (const i of wabas.keys()) {
      const doc = await stack.rt.c.wabas.findOne({ _id: wabas[i]! });
      // Applied once. A hand-over retried after its deadline may reach the run again; it then
      // changes nothing ("joined the open offboarding"), see docs/limits.md, "Lifecycle events". A heavy WABA's
      // log keeps its 20 newest entries of 3,000 offboardings: the applied one has scrolled out,
      // and every entry it kept joined the open offboarding.
      const applied = doc?.events.filter((e) => e.type === 'ACCOUNT_OFFBOARDED' && e.outcome === 'applied');
      if (isHeavy(i)) {
        expect(applied?.length ?? 0).toBeLessThanOrEqual(1);
        expect(doc?.events.every((e) => e.outcome === 'applied' || e.outcome === 'joined the open offboarding')).toBe(
          true,
        );
      } else expect(applied).toHaveLength(1);
      expect(doc?.state).toBe('offboarded');
    }
    for (const i of [...new Set([0, ...shed])].slice(0, 3)) {
      const keys = parseWebhookBody(delivery(wabas[i]!, time, isHeavy(i))).accountUpdates.map((u) => u.key);
      expect((await stack.rt.c.accountEvents.findOne({ _id: keys[0]! }))?.outcome).toBe('signalled');
      expect(await stack.rt.c.accountEvents.countDocuments({ _id: keys[0]! })).toBe(1);
      if (i === 0) {
        await eventually(
          async () => (await stack.rt.c.accountEvents.countDocuments({ _id: keys[keys.length - 1]! })) === 1,
          60_000,
          500,
        );
      }
    }
  }, 300_000);
});
