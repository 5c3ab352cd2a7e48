import fs from 'node:fs';
import { z } from 'zod';
import { DEFAULT_TASK_QUEUE, type EscalationLevel, type LifecycleSettings } from '../workflows/contracts';

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

const envSchema = z.object({
  PORT: intIn(0, 65535).default(3000),
  HOST: z.string().default('127.0.0.1'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),

  META_APP_SECRET: csv,
  META_VERIFY_TOKEN: z.string().min(1),
  WEBHOOK_PATH: z.string().startsWith('/').default('/webhooks/meta'),
  WEBHOOK_MAX_BODY_BYTES: intIn(1024, 64 * 1024 * 1024).default(4 * 1024 * 1024),

  /** Webhook deliveries handled at once; one more is answered 503 with Retry-After. */
  WEBHOOK_MAX_IN_FLIGHT: intIn(1, 100_000).default(64),
  /** Send and ops API requests handled at once; one more is answered 429 with Retry-After. */
  API_MAX_IN_FLIGHT: intIn(1, 100_000).default(256),

  OPS_API_KEYS: csv,
  SEND_API_KEYS: csv,

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
  GRAPH_API_TIMEOUT_MS: intIn(100, 120_000).default(15_000),

  ESCALATION_LEVELS: escalationSchema.default(escalationSchema.parse('10m,60m,24h')),
  ON_ABANDON: z.enum(['fail', 'keep']).default('fail'),
  ALERT_WEBHOOK_URL: optionalUrl,
  SLACK_WEBHOOK_URL: optionalUrl,

  /** Default throughput of a registered number; coexistence numbers default to 20 (Meta's fixed cap). */
  DEFAULT_MPS: intIn(1, 1000).default(80),
  /** Pair limit per recipient: burst, then one message per interval (Meta: ~45 in 6 s, then 1 / 6 s). */
  PAIR_LIMIT_BURST: intIn(1, 1000).default(45),
  PAIR_LIMIT_INTERVAL_MS: intIn(0, 600_000).default(6_000),
  /** A send whose answer was lost: `resend_after` the grace period with no status (at-least-once) or `fail` (at-most-once). */
  IN_DOUBT_POLICY: z.enum(['resend_after', 'fail']).default('resend_after'),
  /** How long an in-doubt send waits for a status webhook before the policy applies. */
  IN_DOUBT_GRACE_MS: intIn(0, 3_600_000).default(15_000),
  /** How often a queued send workflow checks its message when no settle signal came. */
  QUEUED_POLL_INTERVAL: z
    .string()
    .default('10m')
    .transform((s, ctx) => {
      const ms = parseDuration(s);
      if (!ms) {
        ctx.addIssue({ code: 'custom', message: 'must be a duration like 10m' });
        return z.NEVER;
      }
      return ms;
    }),
  /** A prebuilt workflow bundle (`npm run build` writes dist/workflow-bundle.js); unset: see `createWorker`. */
  WORKFLOW_BUNDLE_PATH: z
    .string()
    .optional()
    .transform((s) => (s ? s : undefined))
    .refine((p) => p === undefined || fs.existsSync(p), 'no such file'),
});

export type Env = z.infer<typeof envSchema>;

/** The validated configuration every component receives. */
export interface Config {
  port: number;
  host: string;
  logLevel: Env['LOG_LEVEL'];
  webhook: { path: string; verifyToken: string; appSecrets: string[]; maxBodyBytes: number };
  /** In-flight limits (load shedding past them). */
  limits: { webhookMaxInFlight: number; apiMaxInFlight: number };
  opsApiKeys: string[];
  sendApiKeys: string[];
  temporal: { address: string; namespace: string; taskQueue: string };
  mongo: { uri: string; db: string };
  graph: { baseUrl: string; version: string; token: string; tokensByWaba: Record<string, string>; timeoutMs: number };
  lifecycle: LifecycleSettings;
  alerts: { webhookUrl?: string; slackUrl?: string };
  sending: {
    defaultMps: number;
    pairLimitBurst: number;
    pairLimitIntervalMs: number;
    queuedPollMs: number;
    inDoubt: { policy: 'resend_after' | 'fail'; graceMs: number };
  };
  /** The prebuilt workflow bundle the worker loads instead of bundling the source at start. */
  workflowBundlePath?: string;
}

/** Thrown by `loadConfig`; its message names every bad variable. */
export class ConfigError extends Error {
  override name = 'ConfigError';
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
  return {
    port: e.PORT,
    host: e.HOST,
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
      alertSinks: [
        'log',
        ...(e.ALERT_WEBHOOK_URL ? (['webhook'] as const) : []),
        ...(e.SLACK_WEBHOOK_URL ? (['slack'] as const) : []),
      ],
    },
    alerts: { webhookUrl: e.ALERT_WEBHOOK_URL, slackUrl: e.SLACK_WEBHOOK_URL },
    sending: {
      defaultMps: e.DEFAULT_MPS,
      pairLimitBurst: e.PAIR_LIMIT_BURST,
      pairLimitIntervalMs: e.PAIR_LIMIT_INTERVAL_MS,
      queuedPollMs: e.QUEUED_POLL_INTERVAL,
      inDoubt: { policy: e.IN_DOUBT_POLICY, graceMs: e.IN_DOUBT_GRACE_MS },
    },
    ...(e.WORKFLOW_BUNDLE_PATH ? { workflowBundlePath: e.WORKFLOW_BUNDLE_PATH } : {}),
  };
}
