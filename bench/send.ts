/**
 * Send benchmark: steady throughput of the send workflow with the gate open, against a bare
 * Temporal baseline on the same dev server in the same process.
 *
 * - `send`: M send workflows started through the typed client (`createSenderClient`), at most
 *   `--concurrency` starts in flight, all results awaited; one registered number with cap 1,000
 *   and no pair limit (PAIR_LIMIT_INTERVAL_MS=0, simulator pairBurst 0).
 * - `bare-http`: a workflow with one activity making the same single Cloud API POST to the same
 *   simulator number (bench/baseline-*.ts), on its own worker and task queue, started the same way.
 * - `bare-noop`: the same with a no-op activity (the Temporal floor).
 *
 * Rate = M / wall time (first start → last result). Each kind gets a warm-up batch first; then
 * `--rounds` rounds run the three kinds in rotating order, so none always goes first or last.
 * Before each round the `messages` and `settlements` collections are emptied, so every round starts
 * from the same collection sizes (`--keep-messages` turns this off), and the simulator log cleared.
 *
 * Run: npm run bench:send [-- --messages 500 --concurrency 50 --rounds 3]
 */
import { NativeConnection, Worker, bundleWorkflowCode } from '@temporalio/worker';
import { randomBytes } from 'node:crypto';
import { createGraphClient } from '../src/adapters/graph/client';
import { createSenderClient } from '../src/sending/launch';
import type { SendOutcome, SendRequest } from '../src/contracts';
import { createBaselineActivities } from './baseline-activities';
import type { bareSendWorkflow, noopWorkflow } from './baseline-workflows';
import {
  coresUsed,
  cpuSeconds,
  fmt,
  flags,
  int,
  mean,
  median,
  percentile,
  pool,
  runMain,
  table,
  writeResults,
} from './lib/report';
import {
  nowMs,
  say,
  spawnWorkers,
  startServers,
  startService,
  uniqueDigits,
  within,
  type Service,
  type TemporalDbMode,
} from './lib/stack';

const args = flags('send', {
  messages: { type: 'string', default: '500', help: 'workflows per kind and round (M)' },
  concurrency: { type: 'string', default: '50', help: 'workflow starts in flight at most' },
  rounds: { type: 'string', default: '5', help: 'measured rounds (each runs every kind once, rotating the order)' },
  warmup: { type: 'string', default: '100', help: 'workflows per kind before the measured rounds' },
  'keep-messages': { type: 'boolean', default: false, help: 'do not empty messages/settlements between rounds' },
  'temporal-db': { type: 'string', default: 'memory', help: 'memory | file (temp SQLite file)' },
  'mongodb-uri': { type: 'string', help: 'use this MongoDB instead of starting FerretDB' },
  'log-level': { type: 'string', default: 'warn', help: 'service log level (pino)' },
  cap: {
    type: 'string',
    default: '1000',
    help: "the number's cap, msg/s (20: sends wait for slots; judged at the simulator)",
  },
  workers: {
    type: 'string',
    default: '1',
    help: 'worker processes: the in-process one plus this many minus one as children (npm run worker)',
  },
  'keep-dir': { type: 'boolean', default: false, help: 'keep the temp dir (server logs) after the run' },
});

const KINDS = ['send', 'bare-http', 'bare-noop'] as const;
/** Collections that grow by one document per message (emptied between rounds unless --keep-messages). */
const PER_MESSAGE_COLLECTIONS = ['messages', 'settlements'];
type Kind = (typeof KINDS)[number];

interface RoundResult {
  kind: Kind;
  round: number;
  /** Position of this kind within its round (0 = first). */
  position: number;
  messages: number;
  wallSeconds: number;
  perSec: number;
  startP50Ms: number;
  startP99Ms: number;
  e2eP50Ms: number;
  e2eP99Ms: number;
  sent: number;
  notSent: number;
  /** Size of the messages collection when the round began. */
  messagesCollectionAtStart: number;
  /** Cores used per process during the round (this process, the dev server, FerretDB). */
  cores: Record<string, number>;
  /** At the simulator: most sends that arrived (accepted or refused) in any sliding 1,000 ms, and 130429 answers. */
  maxIn1s: number;
  throttled: number;
}

async function main(): Promise<void> {
  const messages = int('messages', args.messages);
  const concurrency = int('concurrency', args.concurrency);
  const rounds = int('rounds', args.rounds);
  const warmup = int('warmup', args.warmup, 0);
  const cap = int('cap', args.cap);
  const workers = int('workers', args.workers);
  const temporalDb = args['temporal-db'] as TemporalDbMode;
  if (temporalDb !== 'memory' && temporalDb !== 'file') throw new Error('--temporal-db must be memory or file');
  const mongodbUri = args['mongodb-uri'] as string | undefined;
  const started = nowMs();

  const servers = await startServers('send', { temporalDb, mongodbUri });
  let svc: Service | undefined;
  let baselineWorker: Worker | undefined;
  let baselineRun: Promise<void> | undefined;
  let baselineConnection: NativeConnection | undefined;
  let extraWorkers: { stop(): Promise<void> } | undefined;
  try {
    svc = await startService(servers, {
      env: { PAIR_LIMIT_INTERVAL_MS: '0' },
      sim: { defaults: { pairBurst: 0 } },
      logLevel: args['log-level'],
    });
    const { config, rt, sim } = svc;
    const wabaId = uniqueDigits('1');
    const phone = uniqueDigits('3');
    sim.setNumber(phone, { throughputPerSec: cap, pairBurst: 0 });
    await svc.register(phone, wabaId, { mps: cap, coexistence: false });
    extraWorkers = await spawnWorkers(svc, workers - 1);

    // The baseline: its own bundle, worker and task queue, against the same server and simulator.
    const baselineQueue = `bench-baseline-${randomBytes(4).toString('hex')}`;
    const graph = createGraphClient({
      baseUrl: config.graph.baseUrl,
      version: config.graph.version,
      timeoutMs: config.graph.timeoutMs,
      tokenFor: () => config.graph.token,
    });
    baselineConnection = await NativeConnection.connect({ address: config.temporal.address });
    baselineWorker = await Worker.create({
      connection: baselineConnection,
      namespace: config.temporal.namespace,
      taskQueue: baselineQueue,
      workflowBundle: await bundleWorkflowCode({
        workflowsPath: require.resolve('./baseline-workflows'),
        logger: { trace() {}, debug() {}, info() {}, warn() {}, error() {}, log() {} },
      }),
      activities: createBaselineActivities({ graph }),
    });
    baselineRun = baselineWorker.run();

    const sender = createSenderClient({ client: rt.temporal, taskQueue: config.temporal.taskQueue });
    const requestFor = (kind: Kind, i: number, tag: string): SendRequest => ({
      messageId: `${kind}_${tag}_${i}`,
      phoneNumberId: phone,
      to: `1555${String(i % 1000).padStart(7, '0')}`,
      type: 'text',
      text: { body: `${kind} ${i}` },
      acceptedAt: new Date().toISOString(),
    });

    /** Starts one workflow of `kind`; resolves with a function that awaits its result. */
    async function start(kind: Kind, req: SendRequest): Promise<() => Promise<SendOutcome>> {
      if (kind === 'send') {
        const { type: _t, text, ...rest } = req as Extract<SendRequest, { type: 'text' }>;
        const { messageId } = await sender.send({ ...rest, type: 'text', text });
        return () => sender.result(messageId);
      }
      const workflow = kind === 'bare-http' ? 'bareSendWorkflow' : 'noopWorkflow';
      const handle = await rt.temporal.workflow.start<typeof bareSendWorkflow | typeof noopWorkflow>(workflow, {
        workflowId: `${kind}/${req.messageId}`,
        taskQueue: baselineQueue,
        args: [req],
        staticSummary: `${req.type} to ${req.to} via ${req.phoneNumberId}`,
      });
      return () => handle.result();
    }

    async function batch(kind: Kind, n: number, tag: string) {
      const startMs: number[] = [];
      const e2eMs: number[] = [];
      const results: Promise<SendOutcome>[] = [];
      const t0 = nowMs();
      await pool(
        Array.from({ length: n }, (_, i) => i),
        concurrency,
        async (i) => {
          const s = nowMs();
          const result = await start(kind, requestFor(kind, i, tag));
          startMs.push(nowMs() - s);
          results.push(
            result().then((outcome) => {
              e2eMs.push(nowMs() - s);
              return outcome;
            }),
          );
        },
      );
      const outcomes = await Promise.all(results);
      const wallSeconds = (nowMs() - t0) / 1000;
      const sent = outcomes.filter((o) => o.status === 'sent').length;
      return { wallSeconds, startMs, e2eMs, sent, notSent: n - sent };
    }

    const runTag = randomBytes(3).toString('hex');
    for (const kind of KINDS) {
      if (warmup === 0) break;
      const w = await batch(kind, warmup, `${runTag}w`);
      say(`warm-up ${kind}: ${warmup} in ${fmt(w.wallSeconds, 2)} s (${fmt(warmup / w.wallSeconds)} /s)`);
    }

    const pids = { node: process.pid, temporal: servers.infra.temporal?.pid, ferretdb: servers.infra.ferretdb?.pid };
    const results: RoundResult[] = [];
    for (let round = 0; round < rounds; round++) {
      const order = KINDS.map((_, i) => KINDS[(i + round) % KINDS.length]!);
      for (const [position, kind] of order.entries()) {
        if (!args['keep-messages'])
          for (const name of PER_MESSAGE_COLLECTIONS) await rt.db.collection(name).deleteMany({});
        sim.clearLog();
        const messagesCollectionAtStart = await rt.db.collection('messages').countDocuments({});
        const cpu0 = cpuSeconds(pids);
        const b = await batch(kind, messages, `${runTag}r${round}`);
        const cores = coresUsed(cpu0, cpuSeconds(pids), b.wallSeconds);
        const atSim = sim.receiverStats(phone);
        const r: RoundResult = {
          maxIn1s: atSim.maxAttemptsPerWindow,
          throttled: atSim.throttled,
          kind,
          round,
          position,
          messages,
          wallSeconds: b.wallSeconds,
          perSec: messages / b.wallSeconds,
          startP50Ms: percentile(b.startMs, 50),
          startP99Ms: percentile(b.startMs, 99),
          e2eP50Ms: percentile(b.e2eMs, 50),
          e2eP99Ms: percentile(b.e2eMs, 99),
          sent: b.sent,
          notSent: b.notSent,
          messagesCollectionAtStart,
          cores,
        };
        results.push(r);
        say(
          `round ${round + 1}/${rounds} ${kind}: ${messages} in ${fmt(r.wallSeconds, 2)} s = ${fmt(r.perSec)} wf/s (e2e p50 ${fmt(r.e2eP50Ms, 0)} ms, p99 ${fmt(r.e2eP99Ms, 0)} ms; at the simulator max ${r.maxIn1s} in 1 s (cap ${cap}), 130429 ${r.throttled}; cores ${Object.entries(
            cores,
          )
            .map(([k, v]) => `${k} ${v}`)
            .join(', ')})`,
        );
        if (r.notSent > 0) say(`  ${r.notSent} did not end as sent`);
      }
    }

    const summary = KINDS.map((kind) => {
      const rs = results.filter((r) => r.kind === kind);
      return {
        kind,
        rounds: rs.map((r) => Number(r.perSec.toFixed(1))),
        medianPerSec: median(rs.map((r) => r.perSec)),
        meanPerSec: mean(rs.map((r) => r.perSec)),
        e2eP50Ms: median(rs.map((r) => r.e2eP50Ms)),
        e2eP99Ms: median(rs.map((r) => r.e2eP99Ms)),
        cores: Object.fromEntries(
          Object.keys(rs[0]?.cores ?? {}).map((k) => [k, Number(median(rs.map((r) => r.cores[k] ?? 0)).toFixed(2))]),
        ),
        startP50Ms: median(rs.map((r) => r.startP50Ms)),
      };
    });
    const of = (k: Kind) => summary.find((s) => s.kind === k)!;
    const ratioHttp = of('send').medianPerSec / of('bare-http').medianPerSec;
    const ratioNoop = of('send').medianPerSec / of('bare-noop').medianPerSec;
    // Paired: each round's send rate over the same round's baseline (neighbours in time, so load
    // from elsewhere on the machine hits both alike), then the median over rounds.
    const paired = (k: Kind) =>
      median(
        Array.from({ length: rounds }, (_, round) => {
          const rate = (kind: Kind) => results.find((r) => r.round === round && r.kind === kind)!.perSec;
          return rate('send') / rate(k);
        }),
      );
    const pairedHttp = paired('bare-http');
    const pairedNoop = paired('bare-noop');
    const notes = [
      `Temporal dev server ${temporalDb === 'file' ? 'on a temp SQLite file' : 'in memory'}; ${mongodbUri ? 'external MongoDB' : 'FerretDB 1.24 (SQLite) in a temp dir'}; simulator, both workers and the app in this process.`,
      `${messages} workflows per kind per round, at most ${concurrency} starts in flight, all results awaited; rate = M / (first start → last result). ${rounds} rounds in rotating order after a warm-up of ${warmup} per kind; median shown.`,
      `Number registered with mps 1000 (simulator cap 1000), pair limit off (PAIR_LIMIT_INTERVAL_MS=0, simulator pairBurst 0).`,
      args['keep-messages']
        ? 'The messages and settlements collections grow across rounds (--keep-messages).'
        : 'The messages and settlements collections are emptied before each round (every round starts from the same sizes).',
    ];
    process.stdout.write(`\nSend benchmark\n${notes.map((n) => `  - ${n}`).join('\n')}\n\n`);
    process.stdout.write(
      table(
        [
          'kind',
          'median wf/s',
          'rounds wf/s',
          'e2e p50 ms',
          'e2e p99 ms',
          'start p50 ms',
          'cores temporal/node/ferretdb',
          'send ÷ this',
        ],
        summary.map((s) => [
          s.kind,
          fmt(s.medianPerSec),
          s.rounds.map((x) => fmt(x)).join(' / '),
          fmt(s.e2eP50Ms, 0),
          fmt(s.e2eP99Ms, 0),
          fmt(s.startP50Ms, 1),
          [s.cores.temporal, s.cores.node, s.cores.ferretdb]
            .map((v) => (v === undefined ? '-' : fmt(v, 2)))
            .join(' / '),
          s.kind === 'send' ? '-' : `${((of('send').medianPerSec / s.medianPerSec) * 100).toFixed(1)}%`,
        ]),
      ) + '\n\n',
    );
    process.stdout.write(
      `send ÷ bare-http = ${(ratioHttp * 100).toFixed(1)}% (median of per-round ratios ${(pairedHttp * 100).toFixed(1)}%)   ` +
        `send ÷ bare-noop = ${(ratioNoop * 100).toFixed(1)}% (per-round ${(pairedNoop * 100).toFixed(1)}%)\n`,
    );
    const file = writeResults('send', {
      settings: {
        messages,
        concurrency,
        rounds,
        cap,
        workers,
        warmup,
        temporalDb,
        externalMongo: Boolean(mongodbUri),
        clearMessagesBetweenRounds: !args['keep-messages'],
      },
      notes,
      summary,
      ratios: {
        sendOverBareHttp: ratioHttp,
        sendOverBareNoop: ratioNoop,
        pairedSendOverBareHttp: pairedHttp,
        pairedSendOverBareNoop: pairedNoop,
      },
      rounds: results,
      totalSeconds: (nowMs() - started) / 1000,
    });
    process.stdout.write(`results: ${file}\n`);
  } finally {
    baselineWorker?.shutdown();
    if (baselineRun) await within(30_000, baselineRun);
    if (baselineConnection) await within(5_000, baselineConnection.close());
    await extraWorkers?.stop();
    await svc?.stop();
    await servers.stop(args['keep-dir']);
  }
}

runMain(main);
