import fs from 'node:fs';
import { z } from 'zod';
import { forwardTargetsSchema, type ForwardTarget } from './relay/targets';
import { DEFAULT_TASK_QUEUE, type EscalationLevel, type LifecycleSettings } from './contracts';

/**
 * Configuration, read once from the environment at start-up and validated. A bad or missing value
 * stops the process with a message naming the variable (see `loadConfig`). Nothing else in the
 * code reads `process.env`: the values are passed down.
 */

const csv = z
  .string()
  .transform((s) =>
    s
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean),
  )
  .pipe(z.array(z.string()).min(1, 'must list at least one value'));

const optionalUrl = z
  .string()
  .optional()
  .transform((s) => (s ? s : undefined))
  .pipe(z.url().optional());

const DURATION_RE = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;
const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** Parses `500ms`, `10s`, `10m`, `1h`, `1d` into milliseconds; undefined when malformed. */
export function parseDuration(text: string): number | undefined {
  const m = DURATION_RE.exec(text.trim());
  if (!m) return undefined;
  return Math.round(Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS]);
}

const SEVERITIES = ['warning', 'page', 'critical'] as const;

/** `10m,60m,24h` → three levels (warning, page, critical/final), strictly increasing. */
/** A duration like `1m` or `30s`; `0` means off (0 ms). */
function durationOrOff(fallback: string) {
  return z
    .string()
    .default(fallback)
    .transform((t, ctx) => {
      if (t.trim() === '0') return 0;
      const ms = parseDuration(t);
      if (!ms) {
        ctx.addIssue({ code: 'custom', message: 'must be a duration like 1m, or 0 (off)' });
        return z.NEVER;
      }
      return ms;
    });
}

const escalationSchema = z.string().transform((s, ctx): EscalationLevel[] => {
  const parts = s.split(',').map((x) => x.trim());
  const levels: EscalationLevel[] = [];
  for (const [i, part] of parts.entries()) {
    const ms = parseDuration(part);
    if (ms === undefined || ms <= 0) {
      ctx.addIssue({ code: 'custom', message: `"${part}" is not a duration like 10m, 1h or 24h` });
      return z.NEVER;
    }
    const prev = levels[i - 1];
    if (prev && ms <= prev.afterMs) {
      ctx.addIssue({ code: 'custom', message: 'levels must be strictly increasing' });
      return z.NEVER;
    }
    const severity = i === parts.length - 1 ? 'critical' : (SEVERITIES[Math.min(i, 1)] ?? 'page');
    levels.push({ level: i + 1, afterMs: ms, severity });
  }
  return levels;
});

const intIn = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

/** A send key and the WABAs it may use (`wabas` absent: every WABA). */
export interface SendKey {
  key: string;
  wabas?: string[];
}

/**
 * `SEND_API_KEYS`: comma-separated entries, each `key` (every WABA) or `key:waba1|waba2` (only
 * those WABAs). Messages never quote a key (it is a secret); they give the entry's position.
 */
const sendKeysSchema = csv.transform((entries, ctx): SendKey[] => {
  const keys: SendKey[] = [];
  for (const [i, entry] of entries.entries()) {
    const colon = entry.indexOf(':');
    if (colon < 0) {
      keys.push({ key: entry });
      continue;
    }
    const key = entry.slice(0, colon).trim();
    const wabas = entry
      .slice(colon + 1)
      .split('|')
      .map((w) => w.trim());
    if (!key || wabas.length === 0 || wabas.some((w) => !/^[0-9]{1,32}$/.test(w))) {
      ctx.addIssue({
        code: 'custom',
        message: `entry ${i + 1} must be key or key:wabaId|wabaId (WABA ids are digits)`,
      });
      return z.NEVER;
    }
    keys.push({ key, wabas });
  }
  if (new Set(keys.map((k) => k.key)).size !== keys.length) {
    ctx.addIssue({ code: 'custom', message: 'a key is listed twice' });
    return z.NEVER;
  }
  return keys;
});

/** A duration like `30d`, `24h`, `90s`; `0` or `off` turns the feature off (undefined). */
const optionalDuration = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((s, ctx): number | undefined => {
      if (s.trim() === '0' || s.trim() === 'off') return undefined;
      const ms = parseDuration(s);
      if (!ms || ms < 1_000) {
        ctx.addIssue({ code: 'custom', message: 'must be a duration of at least 1s like 30d or 24h, or off' });
        return z.NEVER;
      }
      return ms;
    });

const durationAtLeast = (fallback: string, minMs: number) =>
  z
    .string()
    .default(fallback)
    .transform((s, ctx) => {
      const ms = parseDuration(s);
      if (!ms || ms < minMs) {
        ctx.addIssue({ code: 'custom', message: `must be a duration like ${fallback} (at least ${minMs / 1000}s)` });
        return z.NEVER;
      }
      return ms;
    });

const optionalPort = z
  .string()
  .optional()
  .transform((s) => (s ? s : undefined))
  .pipe(z.optional(z.string().regex(/^[0-9]{1,5}$/, 'must be a port number')))
  .transform((s) => (s === undefined ? undefined : Number(s)))
  .refine((n) => n === undefined || n <= 65535, 'must be a port number (0–65535)');

const envSchema = z.object({
  PORT: intIn(0, 65535).default(3000),
  HOST: z.string().default('127.0.0.1'),
  /** When set, ops, metrics, readiness and /openapi.json move to this listener (off the public one). */
  INTERNAL_PORT: optionalPort,
  INTERNAL_HOST: z.string().min(1).default('127.0.0.1'),
  /** When set, the worker serves its own /metrics here. */
  WORKER_METRICS_PORT: optionalPort,
  WORKER_METRICS_HOST: z.string().min(1).default('127.0.0.1'),
  /** When set (`host:port`), the worker's Temporal runtime serves the SDK's Prometheus metrics there. */
  TEMPORAL_METRICS_BIND: z
    .string()
    .optional()
    .transform((s) => (s ? s : undefined))
    .refine((s) => s === undefined || /^[^\s:]+:[0-9]{1,5}$/.test(s), 'must be host:port'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /**
   * OpenTelemetry tracing (src/telemetry.ts): the OTLP/HTTP collector's base URL, spans go to
   * `<url>/v1/traces` as OTLP JSON. Unset: no tracing, no OpenTelemetry SDK is loaded.
   */
  OTEL_EXPORTER_OTLP_ENDPOINT: z
    .string()
    .optional()
    .transform((s) => (s ? s : undefined))
    .pipe(z.url({ protocol: /^https?$/, message: 'must be an http:// or https:// URL' }).optional()),
  /** The `service.name` of the spans (with tracing on). */
  OTEL_SERVICE_NAME: z
    .string()
    .optional()
    .transform((s) => (s?.trim() ? s.trim() : 'coexist-relay')),

  META_APP_SECRET: csv,
  META_VERIFY_TOKEN: z.string().min(1),
  WEBHOOK_PATH: z.string().startsWith('/').default('/webhooks/meta'),
  WEBHOOK_MAX_BODY_BYTES: intIn(1024, 64 * 1024 * 1024).default(4 * 1024 * 1024),

  /** Webhook deliveries handled at once; one more is answered 503 with Retry-After. */
  WEBHOOK_MAX_IN_FLIGHT: intIn(1, 100_000).default(64),
  /** Send and ops API requests handled at once; one more is answered 429 with Retry-After. */
  API_MAX_IN_FLIGHT: intIn(1, 100_000).default(256),

  OPS_API_KEYS: csv,
  SEND_API_KEYS: sendKeysSchema,
  /** Token bucket per API key on /v1/… : refill rate (requests per second; 0 = off) and burst. */
  API_KEY_RATE_PER_SEC: intIn(0, 1_000_000).default(100),
  API_KEY_BURST: intIn(1, 1_000_000).default(200),

  /** Retention per collection (`off` keeps forever); see src/adapters/store/retention.ts. */
  RETENTION_MESSAGES: optionalDuration('30d'),
  RETENTION_STATUSES: optionalDuration('30d'),
  RETENTION_ACCOUNT_EVENTS: optionalDuration('90d'),
  RETENTION_IDEMPOTENCY: optionalDuration('24h'),
  /** The `forwarded` log, with the bytes replay sends again. */
  RETENTION_DELIVERIES: optionalDuration('7d'),
  /** How often the worker purges expired documents on a store without TTL indexes; at least 10 s. */
  RETENTION_PURGE_INTERVAL: durationAtLeast('5m', 10_000),
  /** Documents one purge round deletes per collection at most. */
  RETENTION_PURGE_BATCH: intIn(1, 10_000).default(500),

  TEMPORAL_ADDRESS: z.string().min(1),
  TEMPORAL_NAMESPACE: z.string().min(1).default('default'),
  TEMPORAL_TASK_QUEUE: z.string().min(1).default(DEFAULT_TASK_QUEUE),

  MONGODB_URI: z.string().regex(/^mongodb(\+srv)?:\/\//, 'must be a mongodb:// or mongodb+srv:// URI'),
  MONGODB_DB: z.string().min(1).default('coexist_relay'),

  GRAPH_API_BASE_URL: z.url().default('https://graph.facebook.com'),
  GRAPH_API_VERSION: z
    .string()
    .regex(/^v\d+\.\d+$/, 'must look like v25.0')
    .default('v25.0'),
  GRAPH_API_TOKEN: z.string().min(1),
  /** JSON object `{ "<wabaId>": "<token>" }` overriding GRAPH_API_TOKEN per WABA. */
  GRAPH_API_TOKENS_BY_WABA: z
    .string()
    .default('{}')
    .transform((s, ctx) => {
      try {
        const parsed: unknown = JSON.parse(s);
        return z.record(z.string(), z.string().min(1)).parse(parsed);
      } catch {
        ctx.addIssue({ code: 'custom', message: 'must be a JSON object of WABA id → token' });
        return z.NEVER;
      }
    }),
  /** At most 40 s: a direct send's attempt has one minute, and its POST must end within it (src/sending/send.activities.ts). */
  GRAPH_API_TIMEOUT_MS: intIn(100, 40_000).default(15_000),

  ESCALATION_LEVELS: escalationSchema.default(escalationSchema.parse('10m,60m,24h')),
  ON_ABANDON: z.enum(['fail', 'keep']).default('fail'),
  /** While a gate is closed, probe Meta's phone-number nodes this often (`0` turns probing off). */
  GATE_PROBE_INTERVAL: durationOrOff('1m'),
  /** Probes back off while a gate stays closed (a probe each time the closure's age doubles), at most this far apart. */
  GATE_PROBE_MAX_INTERVAL: durationAtLeast('1h', 1_000),
  /** A gate closed by a send error or failed status reopens when a probe says usable this long after closing. */
  GATE_PROBE_GRACE: durationOrOff('2m'),
  ALERT_WEBHOOK_URL: optionalUrl,
  SLACK_WEBHOOK_URL: optionalUrl,
  /** Slack Web API (threads one offboarding's alerts): a bot token and a channel; wins over the incoming webhook. */
  SLACK_BOT_TOKEN: z.string().optional(),
  SLACK_CHANNEL: z.string().optional(),
  SLACK_API_BASE_URL: z.url().default('https://slack.com/api'),
  /** PagerDuty Events API v2: one incident per WABA offboarding (dedup key), resolved on reconnect. */
  PAGERDUTY_ROUTING_KEY: z.string().optional(),
  PAGERDUTY_EVENTS_URL: z.url().default('https://events.pagerduty.com/v2/enqueue'),

  /** Default throughput of a registered number; coexistence numbers default to 20 (Meta's fixed cap). */
  DEFAULT_MPS: intIn(1, 1000).default(80),
  /** Pair limit per recipient: burst, then one message per interval (Meta: ~45 in 6 s, then 1 / 6 s). */
  PAIR_LIMIT_BURST: intIn(1, 1000).default(45),
  PAIR_LIMIT_INTERVAL_MS: intIn(0, 600_000).default(6_000),
  /** A send whose answer was lost: `resend_after` the grace period with no status (at-least-once) or `fail` (at-most-once). */
  IN_DOUBT_POLICY: z.enum(['resend_after', 'fail']).default('resend_after'),
  /** How long an in-doubt send waits for a status webhook before the policy applies. */
  IN_DOUBT_GRACE_MS: intIn(0, 3_600_000).default(15_000),
  /**
   * What a drain keeps in order at the receiver: `recipient` (each recipient's messages strictly,
   * the WABA's queue up to a few places) or `waba` (the whole queue strictly: one send at a time).
   */
  DRAIN_ORDER: z.enum(['recipient', 'waba']).default('recipient'),
  /** Downstream endpoints that receive every Meta delivery (JSON array; see src/relay/targets.ts). */
  FORWARD_TARGETS: forwardTargetsSchema,
  /** How long a delivery is retried before it is dead-lettered (Meta's own retry period is 7 days). */
  FORWARD_MAX_AGE: durationAtLeast('7d', 1_000),
  /** A target whose oldest pending forward is older than this raises an alert (logged, and on /metrics). */
  FORWARD_BACKLOG_ALERT_AGE: durationAtLeast('15m', 1_000),
  /** A prebuilt workflow bundle (`npm run build` writes dist/workflow-bundle.js); unset: see `createWorker`. */
  WORKFLOW_BUNDLE_PATH: z
    .string()
    .optional()
    .transform((s) => (s ? s : undefined))
    .refine((p) => p === undefined || fs.existsSync(p), 'no such file'),
});

export type Env = z.infer<typeof envSchema>;

/** Every environment variable the service reads (docs/configuration.md documents each one). */
export const ENV_VARIABLES = Object.keys(envSchema.shape) as (keyof Env)[];

/** Retention windows in ms per kind of record (undefined: kept forever). */
export interface RetentionSettings {
  /** `messages` and `settlements`, counted from acceptance / settlement. */
  messagesMs?: number;
  /** `message_statuses`, from receipt. */
  statusesMs?: number;
  /** `account_events`, from receipt. */
  accountEventsMs?: number;
  /** `idempotency`: the window in which a repeated Idempotency-Key replays the first answer. */
  idempotencyMs?: number;
  /** `forwarded` (the log and replay archive, from delivery). */
  deliveriesMs?: number;
  purgeIntervalMs: number;
  purgeBatch: number;
}

/** Forwarding of Meta deliveries and service events (src/relay/forwarder.ts). */
export interface ForwardSettings {
  targets: ForwardTarget[];
  /** Past this age a delivery that could not be forwarded is dead-lettered. */
  maxAgeMs: number;
  /** Past this age a target's oldest pending forward raises an alert. */
  backlogAlertMs: number;
}

/** The validated configuration every component receives. */
export interface Config {
  port: number;
  host: string;
  /** The internal listener (ops, metrics, readiness, OpenAPI), when configured. */
  internal?: { port: number; host: string };
  /** The worker's own metrics listener, when configured. */
  workerMetrics?: { port: number; host: string };
  /** `TEMPORAL_METRICS_BIND`: where the worker's Temporal runtime serves SDK metrics. */
  temporalMetricsBind?: string;
  /** OpenTelemetry tracing (`OTEL_EXPORTER_OTLP_ENDPOINT`), when on: see src/telemetry.ts. */
  tracing?: { endpoint: string; serviceName: string };
  logLevel: Env['LOG_LEVEL'];
  webhook: { path: string; verifyToken: string; appSecrets: string[]; maxBodyBytes: number };
  /** In-flight limits (load shedding past them). */
  limits: { webhookMaxInFlight: number; apiMaxInFlight: number };
  opsApiKeys: string[];
  sendApiKeys: SendKey[];
  /** Token bucket per API key (`ratePerSec` 0: no limit). */
  apiKeyRate: { ratePerSec: number; burst: number };
  retention: RetentionSettings;
  temporal: { address: string; namespace: string; taskQueue: string };
  mongo: { uri: string; db: string };
  graph: { baseUrl: string; version: string; token: string; tokensByWaba: Record<string, string>; timeoutMs: number };
  lifecycle: LifecycleSettings;
  alerts: {
    webhookUrl?: string;
    slackUrl?: string;
    slackApi?: { baseUrl: string; botToken: string; channel: string };
    pagerduty?: { eventsUrl: string; routingKey: string };
  };
  sending: {
    defaultMps: number;
    pairLimitBurst: number;
    pairLimitIntervalMs: number;
    inDoubt: { policy: 'resend_after' | 'fail'; graceMs: number };
    /** `DRAIN_ORDER`: `waba` sends a drain's messages one at a time, each after the previous one's answer. */
    drainOrder: 'recipient' | 'waba';
  };
  forward: ForwardSettings;
  /** The prebuilt workflow bundle the worker loads instead of bundling the source at start. */
  workflowBundlePath?: string;
}

/** Thrown by `loadConfig`; its message names every bad variable. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/**
 * The Graph API token a WABA's calls use and where it comes from (`GRAPH_API_TOKENS_BY_WABA[<waba>]`
 * or `GRAPH_API_TOKEN`): the one owner of that choice. Sending is paused per source when Meta
 * refuses the token (src/lifecycle/credentials.ts); operators see the source, never the token.
 */
export function graphTokenOf(graph: Config['graph'], wabaId: string): { token: string; source: string } {
  const own = graph.tokensByWaba[wabaId];
  return own !== undefined
    ? { token: own, source: `GRAPH_API_TOKENS_BY_WABA[${wabaId}]` }
    : { token: graph.token, source: 'GRAPH_API_TOKEN' };
}

/**
 * Validates `env` (normally `process.env`) into a `Config`. Throws `ConfigError` listing each
 * offending variable by name and what is wrong with it.
 */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const result = envSchema.safeParse(env);
  if (!result.success) {
    const lines = result.error.issues.map((issue) => {
      const name = String(issue.path[0] ?? '(environment)');
      const missing = env[name] === undefined || env[name] === '';
      return `  ${name}: ${missing ? 'is required but not set' : issue.message}`;
    });
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  const e = result.data;
  const finalLevel = e.ESCALATION_LEVELS.at(-1);
  if (e.RETENTION_MESSAGES !== undefined && finalLevel && e.RETENTION_MESSAGES <= finalLevel.afterMs) {
    // Retention counts from acceptance: a message must be able to wait out the whole escalation.
    throw new ConfigError(
      'invalid configuration:\n  RETENTION_MESSAGES: must be longer than the last ESCALATION_LEVELS duration',
    );
  }
  if (e.GATE_PROBE_INTERVAL > 0 && e.GATE_PROBE_MAX_INTERVAL < e.GATE_PROBE_INTERVAL) {
    throw new ConfigError('invalid configuration:\n  GATE_PROBE_MAX_INTERVAL: must be at least GATE_PROBE_INTERVAL');
  }
  if (Boolean(e.SLACK_BOT_TOKEN) !== Boolean(e.SLACK_CHANNEL)) {
    const missing = e.SLACK_BOT_TOKEN ? 'SLACK_CHANNEL' : 'SLACK_BOT_TOKEN';
    throw new ConfigError(
      `invalid configuration:\n  ${missing}: is required when ${missing === 'SLACK_CHANNEL' ? 'SLACK_BOT_TOKEN' : 'SLACK_CHANNEL'} is set`,
    );
  }
  return {
    port: e.PORT,
    host: e.HOST,
    ...(e.INTERNAL_PORT !== undefined ? { internal: { port: e.INTERNAL_PORT, host: e.INTERNAL_HOST } } : {}),
    ...(e.WORKER_METRICS_PORT !== undefined
      ? { workerMetrics: { port: e.WORKER_METRICS_PORT, host: e.WORKER_METRICS_HOST } }
      : {}),
    ...(e.TEMPORAL_METRICS_BIND ? { temporalMetricsBind: e.TEMPORAL_METRICS_BIND } : {}),
    ...(e.OTEL_EXPORTER_OTLP_ENDPOINT
      ? { tracing: { endpoint: e.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/+$/, ''), serviceName: e.OTEL_SERVICE_NAME } }
      : {}),
    logLevel: e.LOG_LEVEL,
    webhook: {
      path: e.WEBHOOK_PATH,
      verifyToken: e.META_VERIFY_TOKEN,
      appSecrets: e.META_APP_SECRET,
      maxBodyBytes: e.WEBHOOK_MAX_BODY_BYTES,
    },
    limits: { webhookMaxInFlight: e.WEBHOOK_MAX_IN_FLIGHT, apiMaxInFlight: e.API_MAX_IN_FLIGHT },
    opsApiKeys: e.OPS_API_KEYS,
    sendApiKeys: e.SEND_API_KEYS,
    apiKeyRate: { ratePerSec: e.API_KEY_RATE_PER_SEC, burst: e.API_KEY_BURST },
    retention: {
      ...(e.RETENTION_MESSAGES ? { messagesMs: e.RETENTION_MESSAGES } : {}),
      ...(e.RETENTION_STATUSES ? { statusesMs: e.RETENTION_STATUSES } : {}),
      ...(e.RETENTION_ACCOUNT_EVENTS ? { accountEventsMs: e.RETENTION_ACCOUNT_EVENTS } : {}),
      ...(e.RETENTION_IDEMPOTENCY ? { idempotencyMs: e.RETENTION_IDEMPOTENCY } : {}),
      ...(e.RETENTION_DELIVERIES ? { deliveriesMs: e.RETENTION_DELIVERIES } : {}),
      purgeIntervalMs: e.RETENTION_PURGE_INTERVAL,
      purgeBatch: e.RETENTION_PURGE_BATCH,
    },
    temporal: { address: e.TEMPORAL_ADDRESS, namespace: e.TEMPORAL_NAMESPACE, taskQueue: e.TEMPORAL_TASK_QUEUE },
    mongo: { uri: e.MONGODB_URI, db: e.MONGODB_DB },
    graph: {
      baseUrl: e.GRAPH_API_BASE_URL.replace(/\/+$/, ''),
      version: e.GRAPH_API_VERSION,
      token: e.GRAPH_API_TOKEN,
      tokensByWaba: e.GRAPH_API_TOKENS_BY_WABA,
      timeoutMs: e.GRAPH_API_TIMEOUT_MS,
    },
    lifecycle: {
      escalation: e.ESCALATION_LEVELS,
      onAbandon: e.ON_ABANDON,
      ...(e.GATE_PROBE_INTERVAL > 0
        ? {
            probeIntervalMs: e.GATE_PROBE_INTERVAL,
            probeMaxIntervalMs: e.GATE_PROBE_MAX_INTERVAL,
            probeGraceMs: e.GATE_PROBE_GRACE,
          }
        : {}),
      alertSinks: [
        'log',
        ...(e.ALERT_WEBHOOK_URL ? (['webhook'] as const) : []),
        ...(e.SLACK_WEBHOOK_URL || (e.SLACK_BOT_TOKEN && e.SLACK_CHANNEL) ? (['slack'] as const) : []),
        ...(e.PAGERDUTY_ROUTING_KEY ? (['pagerduty'] as const) : []),
      ],
    },
    alerts: {
      webhookUrl: e.ALERT_WEBHOOK_URL,
      slackUrl: e.SLACK_WEBHOOK_URL,
      ...(e.SLACK_BOT_TOKEN && e.SLACK_CHANNEL
        ? {
            slackApi: {
              baseUrl: e.SLACK_API_BASE_URL.replace(/\/+$/, ''),
              botToken: e.SLACK_BOT_TOKEN,
              channel: e.SLACK_CHANNEL,
            },
          }
        : {}),
      ...(e.PAGERDUTY_ROUTING_KEY
        ? { pagerduty: { eventsUrl: e.PAGERDUTY_EVENTS_URL, routingKey: e.PAGERDUTY_ROUTING_KEY } }
        : {}),
    },
    sending: {
      defaultMps: e.DEFAULT_MPS,
      pairLimitBurst: e.PAIR_LIMIT_BURST,
      pairLimitIntervalMs: e.PAIR_LIMIT_INTERVAL_MS,
      inDoubt: { policy: e.IN_DOUBT_POLICY, graceMs: e.IN_DOUBT_GRACE_MS },
      drainOrder: e.DRAIN_ORDER,
    },
    forward: { targets: e.FORWARD_TARGETS, maxAgeMs: e.FORWARD_MAX_AGE, backlogAlertMs: e.FORWARD_BACKLOG_ALERT_AGE },
    ...(e.WORKFLOW_BUNDLE_PATH ? { workflowBundlePath: e.WORKFLOW_BUNDLE_PATH } : {}),
  };
}
