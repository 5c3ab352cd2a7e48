import type { ForwardSettings } from '../config';
import { backlogTooOld } from '../relay/forwarder';
import type { Collections } from '../adapters/store/db';
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { onSettlementsRecorded, queueStats, type Settlement } from '../sending/queue.store';
import { onOffboardingEnded, wabaStateStats } from '../lifecycle/wabas.store';
import { countPendingDeliveries } from '../lifecycle/outbox.store';
import { forwardStats } from '../relay/forwards.store';
import { listTokenPauses } from '../lifecycle/credential-pauses.store';
import { pauseInForce } from '../lifecycle/credentials';
import type { ClockStatus } from '../sending/shared-clock';
import { withTimeout } from '../util/time';
import type { WebhookCounters } from './webhook';
import { GATE_CAUSES, REASONS, type WabaState } from '../contracts';

const WABA_STATES: readonly WabaState[] = [
  'connected',
  'offboarded',
  'draining',
  'reconnect_abandoned',
  'partner_removed',
];

/**
 * The service's Prometheus metrics, kept by `prom-client`: names starting with `coexist_relay_`, in
 * base units (seconds, messages). Each `createRelayMetrics()` has its own registry (never
 * prom-client's global one) with prom-client's default process metrics in it (CPU, memory, heap,
 * event-loop lag, GC): the server's on its /metrics, the worker's on `WORKER_METRICS_PORT`; `npm
 * run dev` and the tests that run server and worker in one process share one.
 */

/** Seconds buckets for request latencies (5 ms … 10 s). */
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Seconds buckets for offboarding durations (1 min … 7 d). */
const OFFBOARDED_BUCKETS = [60, 300, 600, 1800, 3600, 4 * 3600, 12 * 3600, 86_400, 3 * 86_400, 7 * 86_400];

/** How long a store read may take at a scrape before its gauges are left out of it. */
const COLLECT_TIMEOUT_MS = 2_000;

/** The service's own metrics (names documented in docs/operations.md, "Metrics"). */
export interface RelayMetrics {
  /** Their registry: these metrics, the process metrics, and the store gauges and webhook counters once added. */
  registry: Registry;
  /** `coexist_relay_sends_total{outcome,error_code}`: messages settled (first outcome only). */
  sends: Counter<'outcome' | 'error_code'>;
  /** `coexist_relay_queue_settled_total{outcome}`: settled out of the queue; `rate()` is the drain rate. */
  queueSettled: Counter<'outcome'>;
  /**
   * `coexist_relay_service_window_closed_total{outcome}`: free-form messages whose customer service
   * window was closed: `failed` (`service_window_closed`) or `fallback_template` (sent instead).
   */
  serviceWindowClosed: Counter<'outcome'>;
  /** `coexist_relay_webhook_ack_duration_seconds{code}`: time to answer a Meta webhook POST. */
  webhookAck: Histogram<'code'>;
  /** `coexist_relay_api_rate_limited_total{api}`: /v1 requests refused by a key's rate limit. */
  apiRateLimited: Counter<'api'>;
  /** `coexist_relay_retention_purged_total{collection}`: documents the retention purge deleted. */
  retentionPurged: Counter<'collection'>;
  /** `coexist_relay_alert_deliveries_total{sink,outcome}`: attempts to deliver an alert to a sink. */
  alertDeliveries: Counter<'sink' | 'outcome'>;
  /** `coexist_relay_gate_probes_total{verdict}`: the send gate's probes of Meta, by what they found. */
  gateProbes: Counter<'verdict'>;
  /** `coexist_relay_pacer_late_departures_total{remedy}`: sends that missed their slot's tolerance, by what replaced the slot. */
  lateDepartures: Counter<'remedy'>;
  /** `coexist_relay_offboarded_duration_seconds{to}`: how long ended offboardings lasted. */
  offboardedDuration: Histogram<'to'>;
  /** `coexist_relay_metrics_collect_errors_total`: scrapes in which a store read failed or timed out. */
  collectErrors: Counter;
  /**
   * Runs `read` before each exposition to set `gauges` (of this registry); when it fails or takes
   * over 2 s, they are left out of that exposition and `collectErrors` counts it.
   */
  collect(gauges: readonly Gauge[], read: () => Promise<void>): void;
  /** The whole exposition (Prometheus text format 0.0.4, `registry.contentType`); store reads run first. */
  render(): Promise<string>;
}

/** New metrics in a registry of their own, with the process metrics (no store gauges: see `addStoreGauges`). */
export function createRelayMetrics(): RelayMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  const reads: { gauges: readonly Gauge[]; read: () => Promise<void> }[] = [];
  const collectErrors = new Counter({
    name: 'coexist_relay_metrics_collect_errors_total',
    help: 'Scrapes in which a collector (a store query) failed or timed out.',
    registers,
  });
  return {
    registry,
    sends: new Counter({
      name: 'coexist_relay_sends_total',
      help: "Messages settled, by outcome (sent failed expired cancelled) and Meta's error code (none when absent).",
      labelNames: ['outcome', 'error_code'],
      registers,
    }),
    queueSettled: new Counter({
      name: 'coexist_relay_queue_settled_total',
      help: 'Queued messages settled (drain, expiry, abandonment), by outcome; rate() of it is the drain rate.',
      labelNames: ['outcome'],
      registers,
    }),
    serviceWindowClosed: new Counter({
      name: 'coexist_relay_service_window_closed_total',
      help: 'Free-form messages met by a closed customer service window: failed, or their fallback template sent.',
      labelNames: ['outcome'],
      registers,
    }),
    webhookAck: new Histogram({
      name: 'coexist_relay_webhook_ack_duration_seconds',
      help: 'Time from receiving a Meta webhook POST to its answer, by status code.',
      buckets: LATENCY_BUCKETS,
      labelNames: ['code'],
      registers,
    }),
    apiRateLimited: new Counter({
      name: 'coexist_relay_api_rate_limited_total',
      help: 'Requests to /v1 refused 429 rate_limited by their API key rate limit.',
      labelNames: ['api'],
      registers,
    }),
    retentionPurged: new Counter({
      name: 'coexist_relay_retention_purged_total',
      help: 'Documents deleted by the retention purge, by collection.',
      labelNames: ['collection'],
      registers,
    }),
    alertDeliveries: new Counter({
      name: 'coexist_relay_alert_deliveries_total',
      help: 'Attempts to deliver an alert to a sink (webhook, slack, pagerduty), by outcome (delivered, failed; a failed one is retried).',
      labelNames: ['sink', 'outcome'],
      registers,
    }),
    gateProbes: new Counter({
      name: 'coexist_relay_gate_probes_total',
      help: "Probes of Meta's phone-number nodes for offboarded WABAs (the sweep's and the escalation levels'), by verdict: usable (reported to the run, which may reopen), unusable, unknown (no answer).",
      labelNames: ['verdict'],
      registers,
    }),
    lateDepartures: new Counter({
      name: 'coexist_relay_pacer_late_departures_total',
      help: "Sends that woke later than the pacing tolerance after their cap slot (a busy worker or database) or found a pause, by remedy: swap (took the slot of this worker's next send of the number), claim (claimed a new slot: one more write).",
      labelNames: ['remedy'],
      registers,
    }),
    offboardedDuration: new Histogram({
      name: 'coexist_relay_offboarded_duration_seconds',
      help: 'How long offboardings lasted, observed when they end, by the state the WABA went to.',
      buckets: OFFBOARDED_BUCKETS,
      labelNames: ['to'],
      registers,
    }),
    collectErrors,
    collect(gauges, read) {
      reads.push({ gauges, read });
    },
    async render() {
      const results = await Promise.allSettled(
        reads.map((r) => withTimeout(r.read(), COLLECT_TIMEOUT_MS, 'collector')),
      );
      const failed = new Set<unknown>();
      for (const [i, r] of results.entries()) {
        if (r.status === 'fulfilled') continue;
        collectErrors.inc();
        for (const g of reads[i]!.gauges) failed.add(g);
      }
      // As registry.metrics() renders them, less the gauges of a failed read.
      const names = registry
        .getMetricsAsArray()
        .filter((m) => !failed.has(m))
        .map((m) => m.name);
      return (await Promise.all(names.map((n) => registry.getSingleMetricAsString(n)))).join('\n\n') + '\n';
    },
  };
}

/**
 * The worker's pacing clock gauges (src/sending/shared-clock.ts), registered by the worker: its
 * offset to the database server's clock, the error bound of that measurement, and the alert (1
 * while the bound exceeds what the caps tolerate, or the clock could not be read).
 */
export function addPacingClockGauges(registry: Registry): (status: ClockStatus) => void {
  const gauge = (name: string, help: string) => new Gauge({ name, help, registers: [registry] });
  const offset = gauge(
    'coexist_relay_pacing_clock_offset_seconds',
    "The database server's clock minus this worker's own, as last measured (pacing numbers slots on the database clock).",
  );
  const error = gauge(
    'coexist_relay_pacing_clock_error_bound_seconds',
    'Bound on the error of that measurement (half its round trip); absent while the clock could not be read.',
  );
  const alerting = gauge(
    'coexist_relay_pacing_clock_alerting',
    "1 while this worker cannot tell the database clock within the pacing's tolerance: caps may be exceeded across workers.",
  );
  return (status) => {
    offset.set(status.offsetMs / 1000);
    if (Number.isFinite(status.errorMs)) error.set(status.errorMs / 1000);
    else error.reset();
    alerting.set(status.alerting ? 1 : 0);
  };
}

const counting = new WeakMap<RelayMetrics, WeakSet<Collections>>();

/**
 * Counts, in `sends`, `queueSettled` and `serviceWindowClosed`, every settlement recorded through `c` from now on (the
 * store's `recordSettlements` is the one place outcomes are written), and observes in
 * `offboardedDuration` every offboarding the store's `saveWaba` ends. Once per metrics and
 * collections: the server and a worker in one process may both ask.
 */
export function observeStore(metrics: RelayMetrics, c: Collections): void {
  const seen = counting.get(metrics) ?? new WeakSet<Collections>();
  counting.set(metrics, seen);
  if (seen.has(c)) return;
  seen.add(c);
  onSettlementsRecorded(c, (settled: readonly Settlement[]) => {
    for (const s of settled) {
      metrics.sends.inc({ outcome: s.status, error_code: s.error?.code ?? 'none' });
      if (s.queueId) metrics.queueSettled.inc({ outcome: s.status });
      if (s.sentAs === 'fallback_template') metrics.serviceWindowClosed.inc({ outcome: 'fallback_template' });
      else if (s.reason === REASONS.serviceWindowClosed) metrics.serviceWindowClosed.inc({ outcome: 'failed' });
    }
  });
  onOffboardingEnded(c, ({ to, offboardedMs }) => metrics.offboardedDuration.observe({ to }, offboardedMs / 1000));
}

/** The webhook's plain counters (src/http/webhook.ts) by name, read at each scrape. */
const WEBHOOK_TOTALS = {
  received: ['received_total', 'Webhook POSTs received.'],
  badSignature: ['bad_signature_total', 'Webhook POSTs refused for a missing or wrong signature.'],
  tooLarge: ['too_large_total', 'Webhook POSTs refused for exceeding the body cap.'],
  invalidJson: ['invalid_json_total', 'Signed webhook POSTs whose body is not JSON.'],
  invalidPayload: ['invalid_payload_total', 'Signed webhook POSTs that are not a webhook envelope.'],
  nonWabaObjects: ['non_waba_objects_total', 'Webhook deliveries for another object, dropped.'],
  accepted: ['accepted_total', 'Webhook deliveries handed over and acknowledged.'],
  sinkFailures: ['sink_failures_total', 'Webhook deliveries answered 503 because the sink failed.'],
  shed: ['shed_total', 'Webhook deliveries answered 503 because too many were in flight.'],
  skipped: ['skipped_total', 'Changes or statuses left out for a wrong shape.'],
  unusable: ['unusable_total', 'Events recorded but not applied because they cannot be understood.'],
} as const satisfies Partial<Record<keyof WebhookCounters, readonly [string, string]>>;

/** The webhook's labelled counters: name, help, label. */
const WEBHOOK_BY_LABEL = {
  byField: ['changes_total', 'Changes in WABA deliveries by field.', 'field'],
  byAccountUpdateEvent: ['account_updates_total', 'account_update events by event.', 'event'],
  byStatus: ['statuses_total', 'Message statuses by status.', 'status'],
} as const satisfies Partial<Record<keyof WebhookCounters, readonly [string, string, string]>>;

/** Exposes `counters` (the webhook's, counted in plain numbers) as `coexist_relay_webhook_…_total` counters. */
export function addWebhookCounters(metrics: RelayMetrics, counters: WebhookCounters): void {
  const registers = [metrics.registry];
  for (const [key, [name, help]] of Object.entries(WEBHOOK_TOTALS)) {
    new Counter({
      name: `coexist_relay_webhook_${name}`,
      help,
      registers,
      collect() {
        this.reset();
        this.inc(counters[key as keyof typeof WEBHOOK_TOTALS]);
      },
    });
  }
  for (const [key, [name, help, label]] of Object.entries(WEBHOOK_BY_LABEL)) {
    new Counter({
      name: `coexist_relay_webhook_${name}`,
      help,
      labelNames: [label],
      registers,
      collect() {
        this.reset();
        for (const [value, n] of counters[key as keyof typeof WEBHOOK_BY_LABEL]) this.inc({ [label]: value }, n);
      },
    });
  }
}

/**
 * Serves `GET /metrics` of `metrics` on `host:port` (the worker's `WORKER_METRICS_PORT`); every
 * other path is 404. Resolves once it listens.
 */
export async function serveMetrics(metrics: RelayMetrics, port: number, host: string): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    metrics.render().then(
      (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
      () => res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics unavailable\n'),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}

/** A gauge of `metrics`' registry. */
function gauge<L extends string = never>(metrics: RelayMetrics, name: string, help: string, labelNames: L[] = []) {
  return new Gauge<L>({ name, help, labelNames, registers: [metrics.registry] });
}

/**
 * Gauges read from the store at each scrape (cheap: the small `wabas` collection and the queue,
 * which holds only what waits): WABAs per state, closed gates per cause, the longest current
 * offboarding, queue depth and the age of the oldest queued message. Registered by the server
 * only (one place reports them).
 */
export function addStoreGauges(
  metrics: RelayMetrics,
  c: Collections,
  forward: ForwardSettings,
  now: () => number = Date.now,
  /** GATE_PROBE_INTERVAL: how long a token pause holds without a check (`pauseInForce`). */
  probeIntervalMs?: number,
): void {
  const wabas = gauge(
    metrics,
    'coexist_relay_wabas',
    'Known WABAs by lifecycle state (the send gate is open only when connected).',
    ['state'],
  );
  const closed = gauge(
    metrics,
    'coexist_relay_gates_closed',
    'WABAs whose send gate is closed, by the cause recorded when it closed (a draining WABA has none: reopened).',
    ['cause'],
  );
  const offboarded = gauge(
    metrics,
    'coexist_relay_offboarded_longest_seconds',
    'How long the longest-offboarded WABA has been offboarded (0 when none is).',
  );
  metrics.collect([wabas, closed, offboarded], async () => {
    const stats = await wabaStateStats(c);
    wabas.reset();
    for (const state of WABA_STATES) wabas.set({ state }, stats.byState[state] ?? 0);
    closed.reset();
    for (const cause of GATE_CAUSES) closed.set({ cause }, stats.byClosureCause[cause] ?? 0);
    const since = stats.oldestOffboardedSince;
    offboarded.set(since !== undefined ? Math.max(0, (now() - since) / 1000) : 0);
  });
  const tokenPaused = gauge(
    metrics,
    'coexist_relay_token_paused',
    'Per Graph API token source: 1 while Meta refuses the token and sending with it is paused (src/lifecycle/credentials.ts).',
    ['source'],
  );
  metrics.collect([tokenPaused], async () => {
    tokenPaused.reset();
    // As the gate sees them: a pause nobody has checked for too long no longer holds anything.
    for (const p of await listTokenPauses(c))
      if (pauseInForce(p, probeIntervalMs, now())) tokenPaused.set({ source: p._id }, 1);
  });
  const depth = gauge(metrics, 'coexist_relay_queue_depth_messages', 'Messages waiting in the queues of all WABAs.');
  const oldest = gauge(
    metrics,
    'coexist_relay_queue_oldest_age_seconds',
    'Age of the oldest queued message (0 when the queue is empty).',
  );
  const outbox = gauge(
    metrics,
    'coexist_relay_outbox_pending_deliveries',
    'Meta deliveries recorded but not yet fully handed over to Temporal (forwarding: coexist_relay_forwards).',
  );
  const forwards = gauge(
    metrics,
    'coexist_relay_forwards',
    'Forwards to FORWARD_TARGETS by state: pending (to send or retry) and dead (dead-lettered).',
    ['state'],
  );
  const forwardAge = gauge(
    metrics,
    'coexist_relay_forward_oldest_pending_age_seconds',
    'Per forward target: age of its oldest pending forward (0 when it has none); past FORWARD_BACKLOG_ALERT_AGE it alerts.',
    ['target'],
  );
  const forwardAlert = gauge(
    metrics,
    'coexist_relay_forward_backlog_alerting',
    'Per forward target: 1 while a pending forward has waited longer than FORWARD_BACKLOG_ALERT_AGE.',
    ['target'],
  );
  metrics.collect([outbox, forwards, forwardAge, forwardAlert], async () => {
    const [pending, stats] = await Promise.all([countPendingDeliveries(c), forwardStats(c, now())]);
    outbox.set(pending);
    for (const [state, n] of Object.entries(stats.byState)) forwards.set({ state }, n);
    for (const t of forward.targets) {
      const ageMs = stats.longestPendingMs[t.name] ?? 0;
      forwardAge.set({ target: t.name }, ageMs / 1000);
      forwardAlert.set({ target: t.name }, backlogTooOld(ageMs, forward) ? 1 : 0);
    }
  });
  metrics.collect([depth, oldest], async () => {
    const stats = await queueStats(c);
    depth.set(stats.depth);
    const at = stats.oldestEnqueuedAt;
    oldest.set(at !== undefined ? Math.max(0, (now() - at) / 1000) : 0);
  });
}
