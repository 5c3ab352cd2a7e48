import type { ForwardSettings } from '../config';
import { backlogTooOld } from '../relay/forwarder';
import type { Collections } from '../adapters/store/db';
import { createServer, type Server } from 'node:http';
import { onSettlementsRecorded, queueStats, type Settlement } from '../adapters/store/queue';
import { onOffboardingEnded, wabaStateStats } from '../adapters/store/wabas';
import { countPendingDeliveries } from '../adapters/store/outbox';
import { forwardStats } from '../adapters/store/forwards';
import { listTokenPauses } from '../adapters/store/credential-pauses';
import { pauseInForce } from '../sending/credentials';
import type { ClockStatus } from '../sending/shared-clock';
import { withTimeout } from '../util/time';
import { GATE_CAUSES, type WabaState } from '../../workflows/contracts';

const WABA_STATES: readonly WabaState[] = [
  'connected',
  'offboarded',
  'draining',
  'reconnect_abandoned',
  'partner_removed',
];

/**
 * A small Prometheus registry (text exposition format 0.0.4): counters, gauges and histograms with
 * labels, in base units (seconds, messages), every name starting with `coexist_relay_`. `prom-client`
 * is not a dependency of this project; this covers what the service exposes. One registry per
 * process (the server's on its /metrics, the worker's on `WORKER_METRICS_PORT`); tests that run
 * server and worker in one process share one.
 */

export const METRIC_PREFIX = 'coexist_relay_';

type Labels = Record<string, string | number>;

/** Distinct label sets kept per metric; further ones are counted under `other` values. */
const MAX_SERIES = 200;

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function seriesKey(labelNames: readonly string[], labels: Labels | undefined): string {
  return labelNames.map((n) => `${n}="${escapeLabel(String(labels?.[n] ?? ''))}"`).join(',');
}

const braces = (key: string, extra = ''): string => {
  const all = [key, extra].filter(Boolean).join(',');
  return all ? `{${all}}` : '';
};

const num = (v: number): string => (Number.isFinite(v) ? String(v) : v > 0 ? '+Inf' : v < 0 ? '-Inf' : 'NaN');

abstract class Metric {
  protected readonly series = new Map<string, number>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
  ) {
    if (!name.startsWith(METRIC_PREFIX)) throw new Error(`metric ${name} must start with ${METRIC_PREFIX}`);
  }
  abstract readonly type: 'counter' | 'gauge' | 'histogram';
  protected key(labels: Labels | undefined): string {
    const key = seriesKey(this.labelNames, labels);
    if (this.series.has(key) || this.series.size < MAX_SERIES) return key;
    return seriesKey(this.labelNames, Object.fromEntries(this.labelNames.map((n) => [n, 'other'])));
  }
  header(): string {
    return `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} ${this.type}\n`;
  }
  render(): string {
    let out = this.header();
    for (const [key, v] of this.series) out += `${this.name}${braces(key)} ${num(v)}\n`;
    return out;
  }
  /** The value of one series (tests, and gauges derived from counters). */
  get(labels?: Labels): number {
    return this.series.get(seriesKey(this.labelNames, labels)) ?? 0;
  }
}

/** A monotonically increasing count (`_total`). */
export class Counter extends Metric {
  readonly type = 'counter';
  inc(labels?: Labels, by = 1): void {
    const k = this.key(labels);
    this.series.set(k, (this.series.get(k) ?? 0) + by);
  }
}

/** A value that goes up and down (set directly, or by a collector at each scrape). */
export class Gauge extends Metric {
  readonly type = 'gauge';
  set(labels: Labels | undefined, value: number): void {
    this.series.set(this.key(labels), value);
  }
  /** Forgets every series (a collector that re-reads all values starts with this). */
  reset(): void {
    this.series.clear();
  }
}

/** Observations in cumulative buckets, with their sum and count. */
export class Histogram extends Metric {
  readonly type = 'histogram';
  private readonly buckets = new Map<string, { counts: number[]; sum: number; count: number }>();
  constructor(
    name: string,
    help: string,
    labelNames: readonly string[],
    readonly bounds: readonly number[],
  ) {
    super(name, help, labelNames);
  }
  observe(labels: Labels | undefined, value: number): void {
    const k = this.key(labels);
    this.series.set(k, 0);
    const h = this.buckets.get(k) ?? { counts: this.bounds.map(() => 0), sum: 0, count: 0 };
    for (const [i, le] of this.bounds.entries()) if (value <= le) h.counts[i]!++;
    h.sum += value;
    h.count++;
    this.buckets.set(k, h);
  }
  /** Observations so far of one series. */
  count(labels?: Labels): number {
    return this.buckets.get(seriesKey(this.labelNames, labels))?.count ?? 0;
  }
  override render(): string {
    let out = this.header();
    for (const [key, h] of this.buckets) {
      for (const [i, le] of this.bounds.entries())
        out += `${this.name}_bucket${braces(key, `le="${le}"`)} ${h.counts[i]}\n`;
      out += `${this.name}_bucket${braces(key, 'le="+Inf"')} ${h.count}\n`;
      out += `${this.name}_sum${braces(key)} ${num(h.sum)}\n`;
      out += `${this.name}_count${braces(key)} ${h.count}\n`;
    }
    return out;
  }
}

/** The registry: metrics by name, plus text sources already in the exposition format. */
export class MetricsRegistry {
  private readonly metrics = new Map<string, Metric>();
  private readonly texts: (() => string)[] = [];
  private readonly collectors: { gauges: Gauge[]; collect: () => Promise<void> }[] = [];
  /** Collectors that failed (a store that did not answer in time): their gauges are left out. */
  readonly collectErrors: Counter;

  constructor() {
    this.collectErrors = this.counter(
      'coexist_relay_metrics_collect_errors_total',
      'Scrapes in which a collector (a store query) failed or timed out.',
    );
  }

  private add<M extends Metric>(m: M): M {
    const existing = this.metrics.get(m.name);
    if (existing) return existing as M;
    this.metrics.set(m.name, m);
    return m;
  }
  counter(name: string, help: string, labelNames: readonly string[] = []): Counter {
    return this.add(new Counter(name, help, labelNames));
  }
  gauge(name: string, help: string, labelNames: readonly string[] = []): Gauge {
    return this.add(new Gauge(name, help, labelNames));
  }
  /** Runs `collect` before each exposition to set `gauges`; when it fails, they are left out of it. */
  collector(gauges: Gauge[], collect: () => Promise<void>): void {
    this.collectors.push({ gauges, collect });
  }
  histogram(name: string, help: string, bounds: readonly number[], labelNames: readonly string[] = []): Histogram {
    return this.add(new Histogram(name, help, labelNames, bounds));
  }
  /** Adds a source of ready-made exposition text (the webhook counters). */
  addText(render: () => string): void {
    this.texts.push(render);
  }

  /**
   * Every sample name this registry can expose and its metric's type, without running the
   * collectors: counters and gauges by name, histograms as `_bucket`, `_sum` and `_count`, text
   * sources by their `# TYPE` lines (the dashboard's test checks its queries against these).
   */
  series(): { name: string; type: Metric['type'] }[] {
    const out = new Map<string, Metric['type']>();
    for (const m of this.metrics.values()) {
      if (m.type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) out.set(m.name + suffix, m.type);
      else out.set(m.name, m.type);
    }
    for (const t of this.texts)
      for (const [, name, type] of t().matchAll(/^# TYPE (\S+) (counter|gauge)$/gm))
        out.set(name!, type as Metric['type']);
    return [...out].map(([name, type]) => ({ name, type })).sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  /** The whole exposition; collectors run first (each bounded to 2 s). */
  async render(): Promise<string> {
    const results = await Promise.allSettled(this.collectors.map((c) => withTimeout(c.collect(), 2_000, 'collector')));
    const failed = new Set<Metric>();
    for (const [i, r] of results.entries()) {
      if (r.status === 'fulfilled') continue;
      this.collectErrors.inc();
      for (const g of this.collectors[i]!.gauges) failed.add(g);
    }
    let out = '';
    for (const m of this.metrics.values()) if (!failed.has(m)) out += m.render();
    for (const t of this.texts) out += t();
    return out;
  }
}

/** Seconds buckets for request latencies (5 ms … 10 s). */
export const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;

/** The service's own metrics (names documented in README, "Metrics"). */
export interface RelayMetrics {
  registry: MetricsRegistry;
  /** `coexist_relay_sends_total{outcome,error_code}`: messages settled (first outcome only). */
  sends: Counter;
  /** `coexist_relay_queue_settled_total{outcome}`: settled out of the queue; `rate()` is the drain rate. */
  queueSettled: Counter;
  /** `coexist_relay_webhook_ack_duration_seconds{code}`: time to answer a Meta webhook POST. */
  webhookAck: Histogram;
  /** `coexist_relay_api_rate_limited_total{api}`: /v1 requests refused by a key's rate limit. */
  apiRateLimited: Counter;
  /** `coexist_relay_retention_purged_total{collection}`: documents the retention purge deleted. */
  retentionPurged: Counter;
  /** `coexist_relay_alert_deliveries_total{sink,outcome}`: attempts to deliver an alert to a sink. */
  alertDeliveries: Counter;
  /** `coexist_relay_gate_probes_total{verdict}`: the send gate's probes of Meta, by what they found. */
  gateProbes: Counter;
  /** `coexist_relay_offboarded_duration_seconds{to}`: how long ended offboardings lasted. */
  offboardedDuration: Histogram;
}

/** Seconds buckets for offboarding durations (1 min … 7 d). */
export const OFFBOARDED_BUCKETS = [
  60,
  300,
  600,
  1800,
  3600,
  4 * 3600,
  12 * 3600,
  86_400,
  3 * 86_400,
  7 * 86_400,
] as const;

/** A registry with the service's counters and histograms (no store gauges: see `addStoreGauges`). */
export function createRelayMetrics(registry = new MetricsRegistry()): RelayMetrics {
  return {
    registry,
    sends: registry.counter(
      'coexist_relay_sends_total',
      "Messages settled, by outcome (sent failed expired cancelled) and Meta's error code (none when absent).",
      ['outcome', 'error_code'],
    ),
    queueSettled: registry.counter(
      'coexist_relay_queue_settled_total',
      'Queued messages settled (drain, expiry, abandonment), by outcome; rate() of it is the drain rate.',
      ['outcome'],
    ),
    webhookAck: registry.histogram(
      'coexist_relay_webhook_ack_duration_seconds',
      'Time from receiving a Meta webhook POST to its answer, by status code.',
      LATENCY_BUCKETS,
      ['code'],
    ),
    apiRateLimited: registry.counter(
      'coexist_relay_api_rate_limited_total',
      'Requests to /v1 refused 429 rate_limited by their API key rate limit.',
      ['api'],
    ),
    retentionPurged: registry.counter(
      'coexist_relay_retention_purged_total',
      'Documents deleted by the retention purge, by collection.',
      ['collection'],
    ),
    alertDeliveries: registry.counter(
      'coexist_relay_alert_deliveries_total',
      'Attempts to deliver an alert to a sink (webhook, slack, pagerduty), by outcome (delivered, failed; a failed one is retried).',
      ['sink', 'outcome'],
    ),
    gateProbes: registry.counter(
      'coexist_relay_gate_probes_total',
      "Probes of Meta's phone-number nodes for offboarded WABAs (the sweep's and the escalation levels'), by verdict: usable (reported to the run, which may reopen), unusable, unknown (no answer).",
      ['verdict'],
    ),
    offboardedDuration: registry.histogram(
      'coexist_relay_offboarded_duration_seconds',
      'How long offboardings lasted, observed when they end, by the state the WABA went to.',
      OFFBOARDED_BUCKETS,
      ['to'],
    ),
  };
}

/**
 * The worker's pacing clock gauges (src/sending/shared-clock.ts), registered by the worker: its
 * offset to the database server's clock, the error bound of that measurement, and the alert (1
 * while the bound exceeds what the caps tolerate, or the clock could not be read).
 */
export function addPacingClockGauges(registry: MetricsRegistry): (status: ClockStatus) => void {
  const offset = registry.gauge(
    'coexist_relay_pacing_clock_offset_seconds',
    "The database server's clock minus this worker's own, as last measured (pacing numbers slots on the database clock).",
  );
  const error = registry.gauge(
    'coexist_relay_pacing_clock_error_bound_seconds',
    'Bound on the error of that measurement (half its round trip); absent while the clock could not be read.',
  );
  const alerting = registry.gauge(
    'coexist_relay_pacing_clock_alerting',
    "1 while this worker cannot tell the database clock within the pacing's tolerance: caps may be exceeded across workers.",
  );
  return (status) => {
    offset.set(undefined, status.offsetMs / 1000);
    if (Number.isFinite(status.errorMs)) error.set(undefined, status.errorMs / 1000);
    else error.reset();
    alerting.set(undefined, status.alerting ? 1 : 0);
  };
}

const counting = new WeakMap<RelayMetrics, WeakSet<Collections>>();

/**
 * Counts, in `sends` and `queueSettled`, every settlement recorded through `c` from now on (the
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
    }
  });
  onOffboardingEnded(c, ({ to, offboardedMs }) => metrics.offboardedDuration.observe({ to }, offboardedMs / 1000));
}

/**
 * Serves `GET /metrics` of `registry` on `host:port` (the worker's `WORKER_METRICS_PORT`); every
 * other path is 404. Resolves once it listens.
 */
export async function serveMetrics(registry: MetricsRegistry, port: number, host: string): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    registry.render().then(
      (text) => res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(text),
      () => res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics unavailable\n'),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}

/**
 * Gauges read from the store at each scrape (cheap: the small `wabas` collection and the queue,
 * which holds only what waits): WABAs per state, closed gates per cause, the longest current
 * offboarding, queue depth and the age of the oldest queued message. Registered by the server
 * only (one place reports them).
 */
export function addStoreGauges(
  registry: MetricsRegistry,
  c: Collections,
  forward: ForwardSettings,
  now: () => number = Date.now,
  /** GATE_PROBE_INTERVAL: how long a token pause holds without a check (`pauseInForce`). */
  probeIntervalMs?: number,
): void {
  const wabas = registry.gauge(
    'coexist_relay_wabas',
    'Known WABAs by lifecycle state (the send gate is open only when connected).',
    ['state'],
  );
  const closed = registry.gauge(
    'coexist_relay_gates_closed',
    'WABAs whose send gate is closed, by the cause recorded when it closed (a draining WABA has none: reopened).',
    ['cause'],
  );
  const offboarded = registry.gauge(
    'coexist_relay_offboarded_longest_seconds',
    'How long the longest-offboarded WABA has been offboarded (0 when none is).',
  );
  registry.collector([wabas, closed, offboarded], async () => {
    const stats = await wabaStateStats(c);
    wabas.reset();
    for (const state of WABA_STATES) wabas.set({ state }, stats.byState[state] ?? 0);
    closed.reset();
    for (const cause of GATE_CAUSES) closed.set({ cause }, stats.byClosureCause[cause] ?? 0);
    const since = stats.oldestOffboardedSince;
    offboarded.set(undefined, since !== undefined ? Math.max(0, (now() - since) / 1000) : 0);
  });
  const tokenPaused = registry.gauge(
    'coexist_relay_token_paused',
    'Per Graph API token source: 1 while Meta refuses the token and sending with it is paused (src/sending/credentials.ts).',
    ['source'],
  );
  registry.collector([tokenPaused], async () => {
    tokenPaused.reset();
    // As the gate sees them: a pause nobody has checked for too long no longer holds anything.
    for (const p of await listTokenPauses(c))
      if (pauseInForce(p, probeIntervalMs, now())) tokenPaused.set({ source: p._id }, 1);
  });
  const depth = registry.gauge('coexist_relay_queue_depth_messages', 'Messages waiting in the queues of all WABAs.');
  const oldest = registry.gauge(
    'coexist_relay_queue_oldest_age_seconds',
    'Age of the oldest queued message (0 when the queue is empty).',
  );
  const outbox = registry.gauge(
    'coexist_relay_outbox_pending_deliveries',
    'Meta deliveries recorded but not yet fully handed over to Temporal or the forward targets.',
  );
  const forwards = registry.gauge(
    'coexist_relay_forwards',
    'Forwards to FORWARD_TARGETS by state: pending (to send or retry) and dead (dead-lettered).',
    ['state'],
  );
  const forwardAge = registry.gauge(
    'coexist_relay_forward_oldest_pending_age_seconds',
    'Per forward target: age of its oldest pending forward (0 when it has none); past FORWARD_BACKLOG_ALERT_AGE it alerts.',
    ['target'],
  );
  const forwardAlert = registry.gauge(
    'coexist_relay_forward_backlog_alerting',
    'Per forward target: 1 while a pending forward has waited longer than FORWARD_BACKLOG_ALERT_AGE.',
    ['target'],
  );
  registry.collector([outbox, forwards, forwardAge, forwardAlert], async () => {
    const [pending, stats] = await Promise.all([countPendingDeliveries(c), forwardStats(c, now())]);
    outbox.set(undefined, pending);
    for (const [state, n] of Object.entries(stats.byState)) forwards.set({ state }, n);
    for (const t of forward.targets) {
      const ageMs = stats.longestPendingMs[t.name] ?? 0;
      forwardAge.set({ target: t.name }, ageMs / 1000);
      forwardAlert.set({ target: t.name }, backlogTooOld(ageMs, forward) ? 1 : 0);
    }
  });
  registry.collector([depth, oldest], async () => {
    const stats = await queueStats(c);
    depth.set(undefined, stats.depth);
    const at = stats.oldestEnqueuedAt;
    oldest.set(undefined, at !== undefined ? Math.max(0, (now() - at) / 1000) : 0);
  });
}
