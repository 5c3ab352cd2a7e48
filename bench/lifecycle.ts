/**
 * `npm run bench:lifecycle`: many WABAs at once, through the real stack (signed webhooks → the
 * outbox → the relay → one lifecycle workflow per WABA; FerretDB; a fresh Temporal dev server).
 *
 * Phases: history events of one offboard → reconnect cycle (without and with 2 queued messages);
 * a burst of `--wabas` offboardings sent 16 at a time (ack p50/p99, non-200s, time to all
 * offboarded); 2 messages queued for each of `--reconnect` of them, then those reconnected at
 * once (acks, time from the first reconnect ack to the last queued send); `--paused` WABAs held
 * paused and idle (CPU of the whole stack, the gate probes per second at the simulator, and the
 * CPU projected once every probe has backed off to GATE_PROBE_MAX_INTERVAL); and the same burst through a bare signal-with-start
 * workflow on the same server (bench/baseline-workflows.ts) as the baseline ratio.
 */
import { randomBytes } from 'node:crypto';
import { bundleWorkflowCode, NativeConnection, Worker } from '@temporalio/worker';
import { wabaWorkflowId } from '../src/contracts';
import { accountUpdatePayload } from '../tools/meta-sim/payloads';
import { sendWebhook } from '../tools/meta-sim/server';
import { bareEventSignal, type bareLifecycleWorkflow } from './baseline-workflows';
import path from 'node:path';
import { freePort } from '../tools/infra/servers';
import {
  cpuProfile,
  cpuSeconds,
  flags,
  fmt,
  int,
  machine,
  percentile,
  pool,
  RESULTS_DIR,
  runMain,
  table,
  writeResults,
} from './lib/report';
import { nowMs, say, sdkMetrics, sleep, startServers, startService, uniqueDigits, type Service } from './lib/stack';

const args = flags('lifecycle', {
  wabas: { type: 'string', default: '2000', help: 'WABAs offboarded in the burst' },
  reconnect: { type: 'string', default: '1000', help: 'of those, reconnected at once' },
  queued: { type: 'string', default: '2', help: 'messages queued per reconnected WABA' },
  paused: { type: 'string', default: '10000', help: 'WABAs held paused for the idle CPU measurement' },
  'idle-seconds': { type: 'string', default: '20', help: 'length of the idle CPU measurement' },
  concurrency: { type: 'string', default: '16', help: 'webhooks in flight (as Meta)' },
  'history-only': { type: 'boolean', default: false, help: 'only count history events of one cycle' },
  'log-level': { type: 'string', default: 'error', help: 'service log level' },
  cache: {
    type: 'string',
    default: '',
    help: "the worker's maxCachedWorkflows (default: the SDK's, from the heap size)",
  },
  profile: { type: 'boolean', default: false, help: 'write a CPU profile of the service during the idle window' },
  'probe-interval': {
    type: 'string',
    default: '1m',
    help: 'GATE_PROBE_INTERVAL (1m as deployed; 1h: no probe falls due in the idle window, which then measures holding alone)',
  },
  'holding-percent': {
    type: 'string',
    default: '',
    help: 'the idle CPU (% of one core) of a `--probe-interval 1h` run of the same sizes: with it, the probes cost their share above it, and the projection at the cap is holding + probes',
  },
});

/** The holding CPU of a probe-less run, when given: what the probes' window spends besides them. */
const holdingPercent = args['holding-percent'] === '' ? undefined : Number(args['holding-percent']);
if (holdingPercent !== undefined && !(holdingPercent >= 0)) {
  throw new Error(`--holding-percent must be a non-negative number, got ${args['holding-percent']}`);
}

const concurrency = int('concurrency', args.concurrency);

interface Acks {
  ms: number[];
  non200: number;
  firstAckAt: number;
  lastAckAt: number;
}

/** Sends `bodies` as signed webhooks, `concurrency` at a time; ack latencies and non-200 count.
 *  `afterAck(i)` runs right after body `i` was answered 200 (inside its slot of the pool). */
async function burst(svc: Service, bodies: unknown[], afterAck?: (i: number) => Promise<void>): Promise<Acks> {
  const ms: number[] = [];
  let non200 = 0;
  let firstAckAt = Infinity;
  let lastAckAt = 0;
  await pool(bodies, concurrency, async (body, i) => {
    for (;;) {
      const t = nowMs();
      const r = await sendWebhook({ targetUrl: svc.webhookUrl, appSecret: svc.appSecret, body: body as never }).catch(
        () => ({ status: 0 }),
      );
      const done = nowMs();
      ms.push(done - t);
      if (r.status === 200) {
        firstAckAt = Math.min(firstAckAt, done);
        lastAckAt = Math.max(lastAckAt, done);
        await afterAck?.(i);
        return;
      }
      non200++; // Meta redelivers: so does the benchmark
      await sleep(1_000);
    }
  });
  return { ms, non200, firstAckAt, lastAckAt };
}

const ackRow = (name: string, a: Acks): (string | number)[] => [
  name,
  a.ms.length,
  fmt(percentile(a.ms, 50)),
  fmt(percentile(a.ms, 99)),
  a.non200,
];

async function until(what: string, check: () => Promise<boolean>, timeoutMs: number, everyMs = 250): Promise<number> {
  const t0 = nowMs();
  while (!(await check())) {
    if (nowMs() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
  return nowMs();
}

/** The pacer's late departures so far, by remedy (the in-process worker's metrics). */
async function lateDepartures(s: Service): Promise<{ swap: number; claim: number }> {
  const values = (await s.metrics.lateDepartures.get()).values;
  const of = (remedy: string) => values.find((v) => v.labels.remedy === remedy)?.value ?? 0;
  return { swap: of('swap'), claim: of('claim') };
}

/** The 12 commands with the most total time, on one line. */
function commandsLine(commands: Record<string, { count: number; p50Ms: number; totalMs: number }>): string {
  return Object.entries(commands)
    .slice(0, 12)
    .map(([k, v]) => `${k} ×${v.count} p50 ${v.p50Ms} ms Σ ${fmt(v.totalMs / 1000)} s`)
    .join('; ');
}

/**
 * A check that every WABA of `ids` is in `state`, cheap enough to poll: it reads the WABA documents
 * by `_id` in the order they were offboarded (8 at a time), remembers how far it got, and stops at
 * the first one not there yet. A `countDocuments({ state })` instead scans every WABA document on
 * FerretDB (1.1–1.3 s of its CPU at 2,000 WABAs); polled every 500 ms, that alone kept FerretDB
 * busy and slowed the service being measured.
 */
function allInState(svc: Service, ids: readonly string[], state: string): () => Promise<boolean> {
  let done = 0;
  return async () => {
    while (done < ids.length) {
      const batch = ids.slice(done, done + 8);
      const docs = await Promise.all(
        batch.map((id) => svc.rt.c.wabas.findOne({ _id: id }, { projection: { state: 1 } })),
      );
      const there = docs.findIndex((d) => d?.state !== state);
      if (there >= 0) {
        done += there;
        return false;
      }
      done += batch.length;
    }
    return true;
  };
}

/** History events of the WABA's latest run (one cycle: each offboarding is a fresh run). */
async function historyEvents(svc: Service, wabaId: string): Promise<number> {
  const handle = svc.rt.temporal.workflow.getHandle(wabaWorkflowId(wabaId));
  await handle.result();
  const history = await handle.fetchHistory();
  return history.events?.length ?? 0;
}

async function cycleHistory(svc: Service, queued: number): Promise<number> {
  const wabaId = uniqueDigits('1');
  const phone = uniqueDigits('3');
  await svc.register(phone, wabaId, { coexistence: true });
  const t = Math.floor(Date.now() / 1000);
  await svc.accountUpdate(wabaId, 'ACCOUNT_OFFBOARDED', { time: t });
  await until(
    'offboarded',
    async () => (await svc.rt.c.wabas.findOne({ _id: wabaId }))?.state === 'offboarded',
    30_000,
  );
  for (let i = 0; i < queued; i++) {
    await svc.call(svc.sendKey, 'POST', '/v1/messages', {
      phoneNumberId: phone,
      to: `1555000${String(i).padStart(4, '0')}`,
      type: 'text',
      text: { body: `h${i}` },
    });
  }
  await svc.accountUpdate(wabaId, 'ACCOUNT_RECONNECTED', { time: t + 1 });
  return historyEvents(svc, wabaId);
}

const offboardBody = (wabaId: string, time: number) => accountUpdatePayload(wabaId, 'ACCOUNT_OFFBOARDED', { time });

runMain(async () => {
  const nWabas = int('wabas', args.wabas);
  const nReconnect = Math.min(nWabas, int('reconnect', args.reconnect, 0));
  const nQueued = int('queued', args.queued, 0);
  const nPaused = int('paused', args.paused, 0);
  const idleSeconds = int('idle-seconds', args['idle-seconds']);
  const servers = await startServers('lifecycle');
  let svc: Service | undefined;
  let baselineWorker: Worker | undefined;
  let baselineRun: Promise<void> | undefined;
  let baselineConnection: NativeConnection | undefined;
  const t0 = nowMs();
  try {
    svc = await startService(servers, {
      // The per-key rate limit off: phase 2 registers and sends thousands through the API at once.
      env: {
        PAIR_LIMIT_INTERVAL_MS: '0',
        API_KEY_RATE_PER_SEC: '0',
        // Gate probes as deployed (the bench stack turns them off by default): holding a paused
        // WABA costs its probes. Escalation levels past the run, so the idle window measures
        // holding, not the first level of WABAs offboarded 10 minutes before it (the 10,000 take
        // longer than that to set up: measured 165% of one core then, with probes off).
        GATE_PROBE_INTERVAL: args['probe-interval'],
        GATE_PROBE_MAX_INTERVAL: '1h',
        ESCALATION_LEVELS: '2h,4h,24h',
      },
      sim: { defaults: { pairBurst: 0 } },
      logLevel: args['log-level'],
      sdkMetricsPort: await freePort(),
      traceDb: true,
      ...(args.cache ? { worker: { workerOptions: { maxCachedWorkflows: int('cache', args.cache, 0) } } } : {}),
    });
    const s = svc;
    const history = { cycle: await cycleHistory(s, 0), cycleWithQueue: await cycleHistory(s, 2) };
    say(
      `history events per offboard → reconnect cycle: ${history.cycle} (with 2 queued messages: ${history.cycleWithQueue})`,
    );
    if (args['history-only']) {
      writeResults('lifecycle', { machine: machine(), args, history });
      return;
    }

    // Phase 1: the offboarding burst. Every `gateEvery`-th WABA has a number: right after its
    // ack, a send is made and read back; `queued` means its gate was already closed.
    const wabas = Array.from({ length: nWabas }, () => uniqueDigits('1'));
    const time = Math.floor(Date.now() / 1000);
    const gateEvery = 20;
    const gatePhones = new Map<number, string>();
    for (let i = 0; i < nWabas; i += gateEvery) gatePhones.set(i, uniqueDigits('3'));
    await pool([...gatePhones], concurrency, ([i, phone]) => s.register(phone, wabas[i]!, { coexistence: true }));
    // Meta says what it would of an offboarded number, so the gate's probes keep the gates closed.
    for (const phone of gatePhones.values()) s.sim.setMode(phone, 'offboarded');
    const gateMs: number[] = [];
    /** The statuses of checks that found the gate open (the message was not queued). */
    const gateOpen: string[] = [];
    const gateRefused: number[] = [];
    /** The checks whose message was queued (they leave in their WABA's drain). */
    const gateQueued = new Set<number>();
    const checkGate = async (i: number): Promise<void> => {
      const phone = gatePhones.get(i);
      if (!phone) return;
      const acked = nowMs();
      const r = await s.call(s.sendKey, 'POST', '/v1/messages', {
        phoneNumberId: phone,
        to: '15559990000',
        type: 'text',
        text: { body: `gate ${i}` },
      });
      if (r.status !== 202) {
        // Not an answer about the gate (shed under load, rate limited): counted apart.
        gateRefused.push(r.status);
        return;
      }
      const view = await s.call(s.sendKey, 'GET', `/v1/messages/${String(r.json.id)}`);
      if (view.json.status === 'queued') {
        gateMs.push(nowMs() - acked);
        gateQueued.add(i);
      } else gateOpen.push(String(view.json.status));
    };
    say(`phase 1: ${nWabas} offboardings, ${concurrency} at a time (${gatePhones.size} gate checks)`);
    s.dbTrace?.start();
    const offAcks = await burst(
      s,
      wabas.map((w) => offboardBody(w, time)),
      checkGate,
    );
    say(
      `  gate closed at the send API ${fmt(percentile(gateMs, 50))} ms (p50) / ${fmt(percentile(gateMs, 99))} ms (p99) after the ack; ${gateOpen.length} of ${gatePhones.size} found open${gateOpen.length ? ` (${gateOpen.join(', ')})` : ''}, ${gateRefused.length} refused${gateRefused.length ? ` (${gateRefused.join(', ')})` : ''}`,
    );
    const allOffAt = await until('all offboarded', allInState(s, wabas, 'offboarded'), 600_000, 500);
    const toAllOffboarded = allOffAt - offAcks.firstAckAt;
    say(`  all ${nWabas} offboarded ${fmt(toAllOffboarded / 1000)} s after the first ack`);
    const burstCommands = s.dbTrace?.stop() ?? {};
    say(
      `  the service's MongoDB commands until then (this bench's own reads of wabas included), by total time: ${commandsLine(burstCommands)}`,
    );

    // Phase 2: queue, then reconnect at once.
    const recon = wabas.slice(0, nReconnect);
    const phones = recon.map(() => uniqueDigits('3'));
    say(`phase 2: registering ${nReconnect} numbers, queueing ${nReconnect * nQueued} messages`);
    await pool(recon, concurrency, (w, i) => s.register(phones[i]!, w, { coexistence: true }));
    const acceptedBefore = s.sim.log.accepted.length;
    await pool(
      Array.from({ length: nReconnect * nQueued }, (_, i) => i),
      concurrency,
      async (i) => {
        const k = Math.floor(i / nQueued);
        const r = await s.call(s.sendKey, 'POST', '/v1/messages', {
          phoneNumberId: phones[k]!,
          to: `1555${String(i).padStart(7, '0')}`,
          type: 'text',
          text: { body: `q${i}` },
        });
        if (r.status !== 202) throw new Error(`send ${i}: ${r.status} ${JSON.stringify(r.json)}`);
      },
    );
    say(`phase 2: ${nReconnect} reconnections, ${concurrency} at a time`);
    s.dbTrace?.start();
    const lateBefore = await lateDepartures(s);
    for (const [i, phone] of gatePhones) if (i < nReconnect) s.sim.setMode(phone, 'normal');
    const reAcks = await burst(
      s,
      recon.map((w) => accountUpdatePayload(w, 'ACCOUNT_RECONNECTED', { time: time + 1 })),
    );
    // The gate checks' messages of reconnected WABAs leave in the same drains.
    const gateQueuedHere = [...gateQueued].filter((i) => i < nReconnect).length;
    const expected = acceptedBefore + nReconnect * nQueued + gateQueuedHere;
    await until('every queued message sent', async () => s.sim.log.accepted.length >= expected, 1_800_000, 500);
    const lastSend = Math.max(...s.sim.log.accepted.slice(acceptedBefore).map((m) => m.at));
    const reconnectToLastSend = lastSend - reAcks.firstAckAt;
    say(`  last queued send ${fmt(reconnectToLastSend / 1000)} s after the first reconnect ack`);
    const waveCommands = s.dbTrace?.stop() ?? {};
    say(`  the service's MongoDB commands in the wave, by total time: ${commandsLine(waveCommands)}`);
    const lateAfter = await lateDepartures(s);
    const waveLate = { swap: lateAfter.swap - lateBefore.swap, claim: lateAfter.claim - lateBefore.claim };
    say(
      `  sends that missed their slot's tolerance: ${waveLate.swap} took the next held slot, ${waveLate.claim} claimed a new one`,
    );

    // Phase 3: paused WABAs held idle.
    const stillPaused = nWabas - nReconnect;
    const more = Math.max(0, nPaused - stillPaused);
    say(`phase 3: ${more} more offboardings (batched 100 per delivery) to hold ${nPaused} paused`);
    const extra = Array.from({ length: more }, () => uniqueDigits('1'));
    const batches: unknown[] = [];
    for (let i = 0; i < extra.length; i += 100) {
      batches.push({
        object: 'whatsapp_business_account',
        entry: extra.slice(i, i + 100).map((id) => ({
          id,
          time,
          changes: [{ field: 'account_update', value: { event: 'ACCOUNT_OFFBOARDED' } }],
        })),
      });
    }
    // Each has a number, as a real client does: the gate's probes read it at the simulator.
    await pool(extra, concurrency, async (w) => {
      const phone = uniqueDigits('3');
      await s.register(phone, w, { coexistence: true });
      s.sim.setMode(phone, 'offboarded');
    });
    const setupAcks = await burst(s, batches);
    await until(
      'all paused',
      allInState(s, [...wabas.slice(nReconnect), ...extra], 'offboarded'),
      2_400_000, // 10,000 WABAs offboarded through their workflows take ~15 min on the dev stack
      1_000,
    );
    await sleep(5_000); // let the last workflow tasks settle
    const pids = { service: process.pid, temporal: servers.infra.temporal?.pid, ferretdb: servers.infra.ferretdb?.pid };
    const cpu0 = cpuSeconds(pids);
    const probes0 = s.sim.stats().probes;
    const sdk0 = await sdkMetrics();
    const w0 = nowMs();
    const hold = (): Promise<void> => sleep(idleSeconds * 1000);
    const profile = args.profile
      ? await cpuProfile(path.join(RESULTS_DIR, 'lifecycle-idle.cpuprofile'), hold)
      : undefined;
    if (!profile) await hold();
    const cpu1 = cpuSeconds(pids);
    const wall = (nowMs() - w0) / 1000;
    const sdk1 = await sdkMetrics();
    // What the worker did meanwhile, from the SDK's own counters: workflow tasks (each a cache
    // hit, or a miss that replays the whole history), activities, and the cache's size.
    const perSecond = (name: string): number => ((sdk1.get(name) ?? 0) - (sdk0.get(name) ?? 0)) / wall;
    const worker = {
      workflowTasksPerSecond: perSecond('temporal_workflow_task_execution_latency_count'),
      cacheHitsPerSecond: perSecond('temporal_sticky_cache_hit'),
      cacheMissesPerSecond: perSecond('temporal_sticky_cache_miss'),
      forcedEvictionsPerSecond: perSecond('temporal_sticky_cache_total_forced_eviction'),
      activitiesPerSecond: perSecond('temporal_activity_execution_latency_count'),
      localActivitiesPerSecond: perSecond('temporal_local_activity_execution_latency_count'),
      cacheSize: sdk1.get('temporal_sticky_cache_size'),
    };
    say(`  worker while idle: ${JSON.stringify(worker)}`);
    if (profile) {
      say(`  CPU profile (${fmt(profile.totalMs / 1000)} s sampled), heaviest by self time:`);
      for (const r of profile.top) say(`    ${fmt(r.selfMs, 0).padStart(7)} ms  ${r.fn}  ${r.at}`);
    }
    // The paused WABAs' gate probes (GATE_PROBE_INTERVAL, backing off to GATE_PROBE_MAX_INTERVAL):
    // the deliberate work of "idle", and what it costs each.
    const probesPerSecond = (s.sim.stats().probes - probes0) / wall;
    const capSeconds = (s.config.lifecycle.probeMaxIntervalMs ?? 0) / 1000;
    const idle: Record<string, number> = {};
    let idleTotal = 0;
    for (const k of Object.keys(cpu1)) {
      idle[k] = (((cpu1[k] ?? 0) - (cpu0[k] ?? 0)) / wall) * 100;
      idleTotal += idle[k]!;
    }
    // A probe a second costs the window's CPU above holding, per probe a second. Without the
    // holding measured apart (`--holding-percent`), the whole window is charged to the probes: an
    // upper bound per probe, and no projection of the total (holding does not shrink with them).
    const cpuPerProbe = probesPerSecond > 0 ? (idleTotal - (holdingPercent ?? 0)) / probesPerSecond : undefined;
    const steadyProbesPerSecond = capSeconds > 0 ? (stillPaused + more) / capSeconds : 0;
    const projected =
      cpuPerProbe !== undefined && holdingPercent !== undefined
        ? holdingPercent + cpuPerProbe * steadyProbesPerSecond
        : undefined;
    say(
      `  idle: ${fmt(idleTotal)}% of one core, ${fmt(probesPerSecond, 1)} probes/s; ` +
        `at the ${fmt(capSeconds / 60)} min cap: ${fmt(steadyProbesPerSecond, 1)} probes/s ≈ ${projected === undefined ? '? (needs --holding-percent)' : `${fmt(projected, 1)}%`}`,
    );

    // Phase 4: the baseline, a bare signal-with-start workflow, same burst size and concurrency.
    const baselineQueue = `bench-bare-lifecycle-${randomBytes(4).toString('hex')}`;
    baselineConnection = await NativeConnection.connect({ address: s.config.temporal.address });
    baselineWorker = await Worker.create({
      connection: baselineConnection,
      namespace: s.config.temporal.namespace,
      taskQueue: baselineQueue,
      workflowBundle: await bundleWorkflowCode({
        workflowsPath: require.resolve('./baseline-workflows'),
        logger: { trace() {}, debug() {}, info() {}, warn() {}, error() {}, log() {} },
      }),
    });
    baselineRun = baselineWorker.run();
    say(`phase 4: baseline, ${nWabas} bare signal-with-starts, ${concurrency} at a time`);
    const b0 = nowMs();
    const ids = Array.from({ length: nWabas }, (_, i) => `bare/${i}-${randomBytes(3).toString('hex')}`);
    await pool(ids, concurrency, (id) =>
      s.rt.temporal.workflow.signalWithStart<typeof bareLifecycleWorkflow, [{ key: string }]>('bareLifecycleWorkflow', {
        workflowId: id,
        taskQueue: baselineQueue,
        signal: bareEventSignal,
        signalArgs: [{ key: id }],
      }),
    );
    await pool(ids, concurrency, (id) => s.rt.temporal.workflow.getHandle(id).result());
    const baselineMs = nowMs() - b0;

    const results = {
      machine: machine(),
      args,
      history,
      phases: {
        offboard: {
          acks: offAcks.ms.length,
          p50: percentile(offAcks.ms, 50),
          p99: percentile(offAcks.ms, 99),
          non200: offAcks.non200,
          toAllOffboardedMs: toAllOffboarded,
          burstCommands,
          gateClosedAfterAckMs: {
            checks: gatePhones.size,
            p50: percentile(gateMs, 50),
            p99: percentile(gateMs, 99),
            open: gateOpen,
            refused: gateRefused,
          },
        },
        reconnect: {
          acks: reAcks.ms.length,
          p50: percentile(reAcks.ms, 50),
          p99: percentile(reAcks.ms, 99),
          non200: reAcks.non200,
          firstAckToLastSendMs: reconnectToLastSend,
          lateDepartures: waveLate,
          waveCommands,
        },
        pausedSetup: {
          deliveries: setupAcks.ms.length,
          p50: percentile(setupAcks.ms, 50),
          p99: percentile(setupAcks.ms, 99),
          non200: setupAcks.non200,
        },
        idle: {
          paused: stillPaused + more,
          seconds: wall,
          cpuPercentOfOneCore: idle,
          total: idleTotal,
          probesPerSecond,
          cpuPercentPerProbePerSecond: cpuPerProbe,
          ...(holdingPercent !== undefined ? { holdingPercent } : {}),
          atCap: {
            probeMaxIntervalSeconds: capSeconds,
            probesPerSecond: steadyProbesPerSecond,
            ...(projected !== undefined ? { projectedPercent: projected } : {}),
          },
          worker,
          ...(profile ? { profileTop: profile.top } : {}),
        },
        baseline: { workflows: nWabas, ms: baselineMs, ratio: baselineMs / toAllOffboarded },
      },
      totalSeconds: (nowMs() - t0) / 1000,
    };
    process.stdout.write(
      '\n' +
        table(
          ['phase', 'requests', 'ack p50 ms', 'ack p99 ms', 'non-200'],
          [
            ackRow(`offboard burst (${nWabas})`, offAcks),
            ackRow(`reconnect burst (${nReconnect})`, reAcks),
            ackRow(`paused setup (${batches.length} deliveries × 100)`, setupAcks),
          ],
        ) +
        '\n\n' +
        table(
          ['measure', 'value'],
          [
            ['history events per offboard → reconnect cycle', history.cycle],
            ['  … with 2 queued messages', history.cycleWithQueue],
            [
              `ack → send API answers queued (${gatePhones.size} checks, p50 / p99; found open; refused)`,
              `${fmt(percentile(gateMs, 50))} / ${fmt(percentile(gateMs, 99))} ms; ${gateOpen.length}; ${gateRefused.length}`,
            ],
            [`time to all ${nWabas} offboarded (from the first ack)`, `${fmt(toAllOffboarded / 1000)} s`],
            [
              `first reconnect ack → last of ${nReconnect * nQueued} queued sends`,
              `${fmt(reconnectToLastSend / 1000)} s`,
            ],
            [
              `idle CPU, ${stillPaused + more} paused, % of one core (service+worker / temporal / ferretdb)`,
              `${fmt(idleTotal)}% (${Object.values(idle)
                .map((v) => fmt(v))
                .join(' / ')})`,
            ],
            [`gate probes during the idle measurement`, `${fmt(probesPerSecond, 1)} /s`],
            [
              holdingPercent === undefined
                ? 'CPU per probe a second, at most (the whole window charged to its probes)'
                : `CPU per probe a second (the window's above the ${fmt(holdingPercent)}% holding)`,
              cpuPerProbe === undefined ? 'no probe measured' : `${fmt(cpuPerProbe, 2)}% of one core`,
            ],
            [
              `idle CPU projected once every WABA's probes reach the ${fmt(capSeconds / 60)} min cap`,
              cpuPerProbe === undefined
                ? 'no probe measured'
                : projected === undefined
                  ? 'needs --holding-percent (the idle CPU of a --probe-interval 1h run)'
                  : `${fmt(projected, 1)}% (${fmt(holdingPercent!)}% holding + ${fmt(steadyProbesPerSecond, 1)} probes/s × ${fmt(cpuPerProbe, 2)}%)`,
            ],
            [`baseline: ${nWabas} bare signal-with-start workflows`, `${fmt(baselineMs / 1000)} s`],
            ['baseline time ÷ service time to all offboarded', fmt(baselineMs / toAllOffboarded, 2)],
            ['whole run', `${fmt(results.totalSeconds)} s`],
          ],
        ) +
        '\n',
    );
    say(`results: ${writeResults('lifecycle', results)}`);
  } finally {
    baselineWorker?.shutdown();
    await baselineRun?.catch(() => undefined);
    await baselineConnection?.close();
    await svc?.stop();
    await servers.stop();
  }
});
