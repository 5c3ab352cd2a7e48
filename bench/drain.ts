/**
 * Drain benchmark: how fast, how precisely paced and how promptly a reconnected WABA's queue goes
 * out, through the real webhook endpoint, lifecycle workflow and drain activity.
 *
 * Per case (one per cap, each on a fresh service: its own database, task queue, simulator, worker
 * and app, against the benchmark's one Temporal dev server and FerretDB): one WABA with one
 * registered number, offboarded by a signed ACCOUNT_OFFBOARDED webhook; N messages over R
 * recipients put into its queue (message documents with status `queued`, as `queueMessage` leaves
 * them; queue entries through `enqueue()` or written exactly as it writes them, with
 * `notify: false` because no send workflow waits), then a signed ACCOUNT_RECONNECTED through the
 * real webhook endpoint. Measured on the simulator's accepted log: ack → first send, achieved
 * rate, its ratio to the cap, the most sends in any sliding 1 s window, rejections, the longest
 * pauses, and ack → WABA document `connected` again.
 *
 * Also measured in the same run: the simulator ceiling (Graph client → simulator, no cap, no pair
 * limit, 64 requests in flight), to show the simulator is not what limits the drain.
 *
 * Run: npm run bench:drain [-- --messages 10000 --recipients 1000 --messages20 2000 --caps 1000,20]
 * The queue's exact order (DRAIN_ORDER=waba, one send at a time) against Meta-like latency:
 *   npm run bench:drain -- --orders recipient,waba --latency 150 --caps 20 --messages20 300
 */
import { createGraphClient } from '../src/adapters/graph/client';
import { countQueued, enqueue, loadEmptyQueue, type NewQueueEntry } from '../src/sending/queue.store';
import type { MessageDoc } from '../src/adapters/store/db';
import type { DrainTuning } from '../src/sending/drain.activities';
import type { WabaState } from '../src/contracts';
import { parseSqliteSynchronous } from '../tools/infra/servers';
import {
  coresUsed,
  cpuSeconds,
  fmt,
  flags,
  int,
  maxInWindow,
  mean,
  pct,
  percentile,
  pool,
  runMain,
  table,
  writeResults,
} from './lib/report';
import {
  nowMs,
  say,
  sleep,
  spawnWorkers,
  startServers,
  startService,
  uniqueDigits,
  type BenchServers,
  type Service,
  type TemporalDbMode,
} from './lib/stack';

/** Meta's default pair limit, in the service config and the simulator. */
const PAIR_BURST = 45;
const PAIR_INTERVAL_MS = 6_000;

const args = flags('drain', {
  messages: { type: 'string', default: '10000', help: 'queued messages for caps above 20 msg/s' },
  messages20: {
    type: 'string',
    default: '2000',
    help: 'queued messages for caps of 20 msg/s or less (10,000 would take 500 s)',
  },
  recipients: { type: 'string', default: '1000', help: 'distinct recipients (messages go round-robin)' },
  caps: { type: 'string', default: '20,1000', help: 'caps to run in this order, msg/s (20 = a coexistence number)' },
  fill: {
    type: 'string',
    default: 'enqueue',
    help: 'mixed | enqueue | bulk: how the queue is filled (see bench/README.md)',
  },
  'enqueue-sample': {
    type: 'string',
    default: '20',
    help: 'with --fill mixed: the last this many entries go through enqueue()',
  },
  tuning: {
    type: 'string',
    help: 'JSON overrides of the drain tuning, e.g. \'{"flushSize":500,"maxUnpersisted":2000}\' (default: the service\'s)',
  },
  'ceiling-requests': { type: 'string', default: '20000', help: 'sends for the simulator-ceiling baseline' },
  'ceiling-concurrency': { type: 'string', default: '64', help: 'requests in flight for the ceiling baseline' },
  'connect-timeout': { type: 'string', default: '300', help: 'seconds to wait for the WABA to be connected again' },
  'temporal-db': { type: 'string', default: 'memory', help: 'memory | file (temp SQLite file)' },
  'mongodb-uri': { type: 'string', help: 'use this MongoDB instead of starting FerretDB' },
  synchronous: {
    type: 'string',
    default: 'normal',
    help: "FerretDB's SQLite synchronous: normal (the wrapper's default) | full (FerretDB's: an fsync per commit)",
  },
  'log-level': { type: 'string', default: 'warn', help: 'service log level (pino)' },
  workers: {
    type: 'string',
    default: '1',
    help: 'worker processes: the in-process one plus this many minus one as children (npm run worker)',
  },
  orders: {
    type: 'string',
    default: 'recipient',
    help: 'DRAIN_ORDER values to run each cap with, in this order: recipient (default) | waba (one send at a time)',
  },
  latency: { type: 'string', default: '0', help: "ms the simulator adds to every answer (Meta's round trip)" },
  jitter: { type: 'string', default: '0', help: 'ms of uniform random latency the simulator adds on top' },
  'keep-dir': { type: 'boolean', default: false, help: 'keep the temp dir (server logs) after the run' },
});

type FillMode = 'mixed' | 'enqueue' | 'bulk';

interface CaseResult {
  cap: number;
  coexistence: boolean;
  /** DRAIN_ORDER of the case. */
  order?: string;
  messages: number;
  recipients: number;
  fill: FillMode;
  fillSeconds: number;
  enqueue: { calls: number; atDepth: number; meanMs: number; p50Ms: number; p99Ms: number };
  webhookAckMs: number;
  ackToFirstSendMs: number;
  sent: number;
  spanSeconds: number;
  /** sends / (last.at − first.at), as specified. */
  ratePerSec: number;
  /** (sends − 1) / (last.at − first.at): the interval rate (what even spacing at the cap gives exactly). */
  intervalRatePerSec: number;
  ratio: number;
  intervalRatio: number;
  maxIn1s: number;
  maxIn1sAt: number;
  withinCap: boolean;
  /** Shortest time spanned by cap + 1 consecutive sends (≥ 1000 ms means no 1 s window exceeds the cap): the headroom. */
  tightestCapPlusOneMs: number | null;
  rejected: Record<string, number>;
  /** Longest pauses between consecutive accepted sends: after which send (0-based) and how long. */
  longestGaps: { afterIndex: number; ms: number }[];
  /** Sends per whole second since the first send. */
  perSecond: number[];
  /** Every accepted send's time, ms after the first (0.1 ms resolution). */
  sendTimesMs: number[];
  ackToConnectedMs: number | null;
  lastSendToConnectedMs: number | null;
  finalState: WabaState | 'missing';
  messagesSent: number;
  recipientOrderViolations: number;
  outOfSequence: number;
  timedOut: boolean;
  /** Cores used per process from the reconnect webhook until every message was sent, and until connected (or the timeout). */
  cores: { untilAllSent?: Record<string, number>; untilEnd: Record<string, number> };
  /** Every MongoDB command of the service's client (worker, app, this benchmark) from the reconnect to the end. */
  dbCommands: Record<string, { count: number; p50Ms: number; maxMs: number; totalMs: number }>;
}

const recipientOf = (i: number, recipients: number): string => `1555${String(i % recipients).padStart(7, '0')}`;

async function waitFor(what: string, fn: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

async function simulatorCeiling(svc: Service, requests: number, concurrency: number) {
  const phone = uniqueDigits('9');
  svc.sim.setNumber(phone, { throughputPerSec: 0, pairBurst: 0 });
  const graph = createGraphClient({
    baseUrl: svc.sim.url,
    version: svc.config.graph.version,
    timeoutMs: 15_000,
    tokenFor: () => 'sim-token',
  });
  const send = (i: number) =>
    graph.sendMessage({
      wabaId: '1',
      phoneNumberId: phone,
      to: recipientOf(i, 1000),
      content: { type: 'text', text: { body: `ceiling ${i}` } },
    });
  const indices = (n: number) => Array.from({ length: n }, (_, i) => i);
  await pool(indices(Math.min(2_000, requests)), concurrency, send); // warm-up
  let errors = 0;
  const t0 = nowMs();
  await pool(indices(requests), concurrency, (i) => send(i).catch(() => void errors++));
  const seconds = (nowMs() - t0) / 1000;
  graph.close();
  svc.sim.clearLog();
  const result = { requests, concurrency, seconds, perSec: requests / seconds, errors };
  say(
    `simulator ceiling: ${fmt(result.perSec, 0)} sends/s (${requests} sends, ${concurrency} in flight, ${errors} errors)`,
  );
  return result;
}

interface CaseOptions {
  cap: number;
  messages: number;
  recipients: number;
  fill: FillMode;
  enqueueSample: number;
  connectTimeoutMs: number;
  /** Processes whose CPU use is recorded (this process, the dev server, FerretDB). */
  pids: Record<string, number | undefined>;
}

async function drainCase(svc: Service, o: CaseOptions): Promise<CaseResult> {
  const { c } = svc.rt;
  const { cap, messages, recipients, fill } = o;
  const coexistence = cap === 20;
  const wabaId = uniqueDigits('1');
  const phone = uniqueDigits('2');
  const label = `cap ${cap} msg/s`;
  svc.sim.setNumber(phone, { throughputPerSec: cap, pairBurst: PAIR_BURST, pairRefillMs: PAIR_INTERVAL_MS });
  await svc.register(phone, wabaId, coexistence ? { coexistence: true } : { mps: cap, coexistence: false });
  const registered = await c.phoneNumbers.findOne({ _id: phone });
  if (registered?.mps !== cap) throw new Error(`the registry says mps ${registered?.mps}, expected ${cap}`);

  // 1. Offboard (the gate closes), so the queue fills as it would in production.
  const offStatus = await svc.accountUpdate(wabaId, 'ACCOUNT_OFFBOARDED');
  if (offStatus !== 200) throw new Error(`ACCOUNT_OFFBOARDED answered ${offStatus}`);
  await waitFor('offboarded', async () => (await c.wabas.findOne({ _id: wabaId }))?.state === 'offboarded', 30_000);

  // 2. Fill: message docs (status `queued`, as a send accepted while offboarded leaves them), then
  //    the queue entries: `bulk`/`mixed` insert the leading entries exactly as enqueue() writes
  //    them (same _id and seq) in batches; the rest go through enqueue() one by one, timed.
  const viaEnqueue = fill === 'enqueue' ? messages : fill === 'bulk' ? 0 : Math.min(messages, o.enqueueSample);
  const bulkCount = messages - viaEnqueue;
  say(
    `${label}: filling the queue: ${messages} messages over ${Math.min(recipients, messages)} recipients, ${bulkCount} in bulk, ${viaEnqueue} through enqueue()…`,
  );
  const fill0 = nowMs();
  const iso = new Date().toISOString();
  const docs: MessageDoc[] = Array.from({ length: messages }, (_, i) => ({
    _id: `bench_${wabaId}_${i}`,
    wabaId,
    phoneNumberId: phone,
    to: recipientOf(i, recipients),
    content: { type: 'text', text: { body: `drain ${i}` } },
    status: 'queued',
    acceptedAt: iso,
    queuedAt: iso,
    updatedAt: iso,
    attempts: 0,
  }));
  for (let i = 0; i < docs.length; i += 500) await c.messages.insertMany(docs.slice(i, i + 500), { ordered: false });
  const entryOf = (d: MessageDoc): NewQueueEntry => ({
    wabaId,
    messageId: d._id,
    phoneNumberId: phone,
    to: d.to,
    content: d.content,
    enqueuedAt: new Date().toISOString(),
    notify: false, // no send workflow waits for these: the drain sends no settle signals
  });
  await loadEmptyQueue(c, wabaId, docs.slice(0, bulkCount).map(entryOf));
  const enqueueMs: number[] = [];
  let lastReport = nowMs();
  for (const [j, d] of docs.slice(bulkCount).entries()) {
    const t = nowMs();
    const { seq } = await enqueue(c, entryOf(d));
    enqueueMs.push(nowMs() - t);
    if (seq !== bulkCount + j + 1) throw new Error(`enqueue() returned seq ${seq}, expected ${bulkCount + j + 1}`);
    if (nowMs() - lastReport > 10_000) {
      lastReport = nowMs();
      say(
        `${label}: ${seq}/${messages} queued (enqueue() ${fmt(mean(enqueueMs.slice(-20)), 0)} ms each at depth ${seq - 1})`,
      );
    }
  }
  const fillSeconds = (nowMs() - fill0) / 1000;
  const queued = await countQueued(c, wabaId);
  if (queued !== messages) throw new Error(`the queue holds ${queued} entries, expected ${messages}`);
  const enqueueStats = {
    calls: enqueueMs.length,
    atDepth: bulkCount,
    meanMs: mean(enqueueMs),
    p50Ms: percentile(enqueueMs, 50),
    p99Ms: percentile(enqueueMs, 99),
  };
  say(
    `${label}: queue filled in ${fmt(fillSeconds)} s` +
      (enqueueMs.length
        ? ` (enqueue() at depth ${bulkCount}…${messages - 1}: mean ${fmt(enqueueStats.meanMs)} ms, p99 ${fmt(enqueueStats.p99Ms)} ms)`
        : ''),
  );
  await sleep(1_000); // let the fill's write load settle

  // 3. Reconnect through the real webhook endpoint and watch.
  const acceptedFor = () => svc.sim.log.accepted.filter((m) => m.phoneNumberId === phone);
  svc.dbTrace?.start();
  const cpu0 = cpuSeconds(o.pids);
  const sent0 = nowMs();
  const status = await svc.accountUpdate(wabaId, 'ACCOUNT_RECONNECTED');
  const ackAt = nowMs();
  let sendPhaseCores: Record<string, number> | undefined;
  if (status !== 200) throw new Error(`ACCOUNT_RECONNECTED answered ${status}`);
  let connectedAt: number | undefined;
  let finalState: WabaState | 'missing' = 'missing';
  let timedOut = false;
  let nextReport = nowMs() + 10_000;
  // Watch the simulator's log (in memory) while sends are going out, and the WABA document every
  // 50 ms once they are all out (every second before that, in case the drain stops early), so the
  // benchmark's own reads stay out of the database while the drain needs it.
  let lastDbRead = 0;
  let scanned = 0;
  let acceptedSoFar = 0;
  const acceptedCount = (): number => {
    const log = svc.sim.log.accepted; // append-only here (far below the simulator's log bound)
    for (; scanned < log.length; scanned++) if (log[scanned]!.phoneNumberId === phone) acceptedSoFar++;
    return acceptedSoFar;
  };
  for (;;) {
    const n = acceptedCount();
    if (!sendPhaseCores && n >= messages)
      sendPhaseCores = coresUsed(cpu0, cpuSeconds(o.pids), (nowMs() - sent0) / 1000);
    if (n >= messages || nowMs() - lastDbRead >= 1_000) {
      lastDbRead = nowMs();
      const doc = await c.wabas.findOne({ _id: wabaId }, { projection: { state: 1 } });
      finalState = doc?.state ?? 'missing';
      if (finalState === 'connected') {
        connectedAt = nowMs();
        break;
      }
    }
    if (nowMs() - ackAt > o.connectTimeoutMs) {
      timedOut = true;
      say(
        `${label}: the WABA is still ${finalState} ${fmt(o.connectTimeoutMs / 1000, 0)} s after the ack; giving up (--connect-timeout)`,
      );
      break;
    }
    if (nowMs() > nextReport) {
      nextReport += 10_000;
      say(`${label}: ${n}/${messages} sent ${fmt((nowMs() - ackAt) / 1000, 0)} s after the ack (state ${finalState})`);
    }
    await sleep(n >= messages ? 50 : 20);
  }

  const wholeCores = coresUsed(cpu0, cpuSeconds(o.pids), (nowMs() - sent0) / 1000);
  sendPhaseCores ??= wholeCores;
  const dbCommands = svc.dbTrace?.stop() ?? {};
  const accepted = acceptedFor();
  const times = accepted.map((m) => m.at);
  const first = accepted[0];
  const last = accepted[accepted.length - 1];
  const spanMs = first && last ? last.at - first.at : 0;
  const window = maxInWindow(times);
  const rejected: Record<string, number> = {};
  for (const r of svc.sim.log.rejected) if (r.phoneNumberId === phone) rejected[r.code] = (rejected[r.code] ?? 0) + 1;
  const gaps = times.slice(1).map((t, i) => ({ afterIndex: i, ms: t - times[i]! }));
  const longestGaps = gaps
    .sort((a, b) => b.ms - a.ms)
    .slice(0, 8)
    .map((g) => ({ afterIndex: g.afterIndex, ms: Number(g.ms.toFixed(1)) }));
  const perSecond: number[] = [];
  for (const t of times) {
    const s = Math.floor((t - times[0]!) / 1000);
    perSecond[s] = (perSecond[s] ?? 0) + 1;
  }
  for (let i = 0; i < perSecond.length; i++) perSecond[i] ??= 0;

  // Order: per recipient strictly increasing; globally, how many sends came after a later one.
  const lastIndexOf = new Map<string, number>();
  let recipientOrderViolations = 0;
  let outOfSequence = 0;
  let maxIndex = -1;
  for (const m of accepted) {
    const index = Number(String((m.body.text as { body?: string } | undefined)?.body ?? '').split(' ')[1]);
    if ((lastIndexOf.get(m.to) ?? -1) > index) recipientOrderViolations++;
    lastIndexOf.set(m.to, index);
    if (index < maxIndex) outOfSequence++;
    maxIndex = Math.max(maxIndex, index);
  }
  // Outcomes live in `settlements` (insert-only; a fresh database per case, so all are this case's).
  const messagesSent = await svc.rt.db.collection('settlements').countDocuments({ status: 'sent' });
  const ratePerSec = spanMs > 0 ? accepted.length / (spanMs / 1000) : 0;
  const intervalRatePerSec = spanMs > 0 ? (accepted.length - 1) / (spanMs / 1000) : 0;
  const result: CaseResult = {
    cap,
    coexistence,
    messages,
    recipients: Math.min(recipients, messages),
    fill,
    fillSeconds,
    enqueue: enqueueStats,
    webhookAckMs: ackAt - sent0,
    ackToFirstSendMs: first ? first.at - ackAt : NaN,
    sent: accepted.length,
    spanSeconds: spanMs / 1000,
    ratePerSec,
    intervalRatePerSec,
    ratio: ratePerSec / cap,
    intervalRatio: intervalRatePerSec / cap,
    maxIn1s: window.count,
    maxIn1sAt: window.startAt,
    withinCap: window.count <= cap,
    tightestCapPlusOneMs:
      times.length > cap ? Number(Math.min(...times.slice(cap).map((t, i) => t - times[i]!)).toFixed(1)) : null,
    rejected,
    longestGaps,
    perSecond,
    sendTimesMs: times.map((t) => Math.round((t - times[0]!) * 10) / 10),
    ackToConnectedMs: connectedAt !== undefined ? connectedAt - ackAt : null,
    lastSendToConnectedMs: connectedAt !== undefined && last ? connectedAt - last.at : null,
    finalState,
    messagesSent,
    recipientOrderViolations,
    outOfSequence,
    timedOut,
    cores: { untilAllSent: sendPhaseCores, untilEnd: wholeCores },
    dbCommands,
  };
  say(
    `${label}: ${accepted.length} sent in ${fmt(spanMs / 1000, 2)} s, ${fmt(ratePerSec)} msg/s (${pct(result.ratio)} of the cap), max ${window.count} in 1 s, ` +
      `first send ${fmt(result.ackToFirstSendMs, 0)} ms after the ack, connected ${result.ackToConnectedMs === null ? 'never' : `${fmt(result.ackToConnectedMs / 1000, 2)} s`} after the ack`,
  );
  const coresText = (c?: Record<string, number>) =>
    c
      ? Object.entries(c)
          .map(([k, v]) => `${k} ${fmt(v, 2)}`)
          .join(', ')
      : 'n/a';
  const pages = dbCommands['find queue'];
  if (pages)
    say(`${label}: queue page reads: ${pages.count}, p50 ${fmt(pages.p50Ms, 0)} ms, max ${fmt(pages.maxMs, 0)} ms`);
  say(`${label}: cores used until all sent: ${coresText(sendPhaseCores)}; until the end: ${coresText(wholeCores)}`);
  return result;
}

async function main(): Promise<void> {
  const messages = int('messages', args.messages);
  const workers = int('workers', args.workers);
  const messages20 = int('messages20', args.messages20);
  const recipients = int('recipients', args.recipients);
  const caps = args.caps.split(',').map((s) => int('caps', s.trim()));
  const ceilingRequests = int('ceiling-requests', args['ceiling-requests']);
  const ceilingConcurrency = int('ceiling-concurrency', args['ceiling-concurrency']);
  const tuning = args.tuning === undefined ? undefined : (JSON.parse(args.tuning as string) as Partial<DrainTuning>);
  const enqueueSample = int('enqueue-sample', args['enqueue-sample'], 0);
  const connectTimeoutMs = int('connect-timeout', args['connect-timeout']) * 1000;
  const fill = args.fill as FillMode;
  if (!['mixed', 'enqueue', 'bulk'].includes(fill)) throw new Error('--fill must be mixed, enqueue or bulk');
  const temporalDb = args['temporal-db'] as TemporalDbMode;
  if (temporalDb !== 'memory' && temporalDb !== 'file') throw new Error('--temporal-db must be memory or file');
  const mongodbUri = args['mongodb-uri'] as string | undefined;
  const orders = args.orders.split(',').map((s) => s.trim());
  if (!orders.every((o) => o === 'recipient' || o === 'waba')) throw new Error('--orders must list recipient or waba');
  const latencyMs = int('latency', args.latency, 0);
  const jitterMs = int('jitter', args.jitter, 0);
  const started = nowMs();

  const synchronous = parseSqliteSynchronous(args.synchronous, '--synchronous') ?? 'normal';
  const servers: BenchServers = await startServers('drain', {
    temporalDb,
    ...(mongodbUri ? { mongodbUri } : { ferretdbSynchronous: synchronous }),
  });
  try {
    const cases: CaseResult[] = [];
    let ceiling: Awaited<ReturnType<typeof simulatorCeiling>> | undefined;
    for (const cap of caps)
      for (const order of orders) {
        const svc = await startService(servers, {
          env: {
            PAIR_LIMIT_BURST: String(PAIR_BURST),
            PAIR_LIMIT_INTERVAL_MS: String(PAIR_INTERVAL_MS),
            DRAIN_ORDER: order,
          },
          sim: { defaults: { pairBurst: PAIR_BURST, pairRefillMs: PAIR_INTERVAL_MS, latencyMs, jitterMs } },
          logLevel: args['log-level'],
          traceDb: true,
          ...(tuning ? { worker: { activityOverrides: { drainTuning: tuning } } } : {}),
        });
        const extra = await spawnWorkers(svc, workers - 1);
        try {
          ceiling ??= await simulatorCeiling(svc, ceilingRequests, ceilingConcurrency);
          const n = cap <= 20 ? messages20 : messages;
          const pids = {
            node: process.pid,
            temporal: servers.infra.temporal?.pid,
            ferretdb: servers.infra.ferretdb?.pid,
          };
          const result = await drainCase(svc, {
            cap,
            messages: n,
            recipients,
            fill,
            enqueueSample,
            connectTimeoutMs,
            pids,
          });
          cases.push({ ...result, order });
        } finally {
          await extra.stop();
          await svc.stop();
        }
      }

    const notes = [
      `Temporal dev server ${temporalDb === 'file' ? 'on a temp SQLite file' : 'in memory'}; ${mongodbUri ? 'external MongoDB' : `FerretDB 1.24 (SQLite, synchronous=${synchronous}) in a temp dir`}; simulator, worker and app in this process${workers > 1 ? `, plus ${workers - 1} worker process(es) (npm run worker) on the same task queue: the drain runs on whichever takes it, the cap is shared through the store` : ''}; a fresh service (database, task queue, simulator) per case.`,
      fill === 'mixed'
        ? `Queue fill: all but the last ${enqueueSample} entries inserted in bulk exactly as enqueue() writes them; the last ${enqueueSample} through enqueue() (timed).`
        : `Queue fill: ${fill === 'enqueue' ? 'every entry through enqueue(), one by one (timed)' : 'every entry inserted in bulk as enqueue() writes it'}.`,
      `DRAIN_ORDER per case: ${orders.join(', ')}${orders.includes('waba') ? ' (waba: one send at a time, the queue exact order at the receiver)' : ''}; the simulator answers after ${latencyMs} ms${jitterMs ? ` + up to ${jitterMs} ms` : ''} (--latency, --jitter).`,
      `Drain tuning: ${tuning ? `${JSON.stringify(tuning)} over the service's defaults (--tuning)` : "the service's defaults"}.`,
      `Pair limit ${PAIR_BURST} burst / ${PAIR_INTERVAL_MS} ms in the service config and the simulator; queue entries have notify: false (no send workflows wait, so the drain sends no settle signals).`,
      ...(caps.some((c) => c <= 20)
        ? [
            `The 20 msg/s case drains ${messages20} messages (--messages20), not ${messages}: ${messages} would take ${messages / 20} s.`,
          ]
        : []),
      "rate = sends / (last.at − first.at) on the simulator's accepted log (n−1 in the numerator gives the interval rate, in the JSON); ratio = rate / cap; max/1s = most sends in any sliding 1 s window.",
    ];
    const rows = cases.map((r) => [
      `${r.cap} msg/s${r.coexistence ? ' (coex)' : ''}${orders.length > 1 || r.order !== 'recipient' ? ` ${r.order}` : ''}`,
      r.sent === r.messages ? String(r.messages) : `${r.sent}/${r.messages}`,
      fmt(r.ackToFirstSendMs, 0),
      fmt(r.ratePerSec, 1),
      pct(r.ratio),
      `${r.maxIn1s}${r.withinCap ? '' : ' (!)'}`,
      r.tightestCapPlusOneMs === null ? '-' : fmt(r.tightestCapPlusOneMs, 1),
      Object.entries(r.rejected)
        .map(([k, v]) => `${k}×${v}`)
        .join(' ') || '0',
      fmt(r.longestGaps[0]?.ms ?? 0, 0),
      r.ackToConnectedMs === null ? 'never' : fmt(r.ackToConnectedMs / 1000, 1),
      r.enqueue.calls ? `${fmt(r.enqueue.meanMs, 1)} / ${fmt(r.enqueue.p99Ms, 1)}` : '-',
    ]);
    if (ceiling)
      rows.push([
        'simulator ceiling (no cap, 64 in flight)',
        String(ceiling.requests),
        '-',
        fmt(ceiling.perSec, 0),
        '-',
        '-',
        '-',
        String(ceiling.errors),
        '-',
        '-',
        '-',
      ]);
    process.stdout.write(`\nDrain benchmark\n${notes.map((n) => `  - ${n}`).join('\n')}\n\n`);
    process.stdout.write(
      table(
        [
          'case',
          'msgs',
          'ack→1st send ms',
          'rate msg/s',
          'of cap',
          'max/1s',
          'cap+1 span ms',
          'rejected',
          'max gap ms',
          'ack→connected s',
          'enqueue() mean/p99 ms',
        ],
        rows,
      ) + '\n\n',
    );
    const file = writeResults('drain', {
      settings: {
        workers,
        messages,
        messages20,
        recipients,
        caps,
        fill,
        enqueueSample,
        tuning: tuning ?? 'service defaults',
        orders,
        latencyMs,
        jitterMs,
        connectTimeoutS: connectTimeoutMs / 1000,
        ceilingRequests,
        ceilingConcurrency,
        temporalDb,
        externalMongo: Boolean(mongodbUri),
        ...(mongodbUri ? {} : { synchronous }),
        pairBurst: PAIR_BURST,
        pairIntervalMs: PAIR_INTERVAL_MS,
      },
      notes,
      ceiling,
      cases,
      totalSeconds: (nowMs() - started) / 1000,
    });
    process.stdout.write(`results: ${file}\n`);
  } finally {
    await servers.stop(args['keep-dir']);
  }
}

runMain(main);
