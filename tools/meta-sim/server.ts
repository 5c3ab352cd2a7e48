import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { z } from 'zod';
import { SIGNATURE_HEADER, signBody } from '../../src/adapters/meta/signature';
import {
  accountUpdatePayload,
  inboundPayload,
  SAMPLE_IDS,
  type DisconnectionInfo,
  type WebhookEnvelope,
} from './payloads';

/**
 * A local stand-in for Meta's Cloud API, used by tests, benchmarks and people trying the service
 * by hand (`npm run meta-sim serve`). It is a real HTTP server on 127.0.0.1 that answers like
 * Meta: the same URLs, success and error shapes, codes and HTTP statuses (see
 * /work/shared/reference/meta-whatsapp.md), with per-phone-number behaviour a test can steer:
 * throughput cap (130429, judged by default on a strict 1,000 ms sliding window), pair rate limit
 * (131056), offboarded / partner-removed modes, entity-level health (an app calling error that
 * makes `health_status` BLOCKED overall while the number can send), latency, server errors and
 * scripted errors. It records every accepted and rejected send, and counts per number what Meta
 * would have received (`receiverStats`): every send that arrived, accepted or refused, on a strict
 * 1,000 ms sliding window and per recipient against its pair limit (the cap measured where Meta
 * judges it: a send the simulator refused still arrived), the 130429 and 131056 answers,
 * duplicates by `biz_opaque_callback_data`, order per recipient.
 *
 * Steering works in process (`sim.setNumber(...)`) and over HTTP (`POST /_sim/numbers/:id`), so a
 * test or a person in another process can drive it. `lifecycle()` plays offboard / reconnect /
 * partner removal: the number's mode changes and the `account_update` webhook goes to the service,
 * or, with `dropWebhook`, is lost on the way (the number is usable again, nobody is told). The send
 * path does no I/O besides the answer and keeps its work O(1) so it stays far from being a
 * benchmark's bottleneck.
 *
 * Routes:
 * - `POST /:version/:phoneNumberId/messages`      send (Cloud API)
 * - `GET  /:version/:phoneNumberId?fields=`       the phone number node (`phoneNumberNode`): `id` plus the asked
 *                                                 fields of status, platform_type, is_on_biz_app, health_status,
 *                                                 code_verification_status, quality_rating, messaging_limit_tier,
 *                                                 throughput, display_phone_number, verified_name
 * - `GET  /_sim/log?phoneNumberId=&since=<seq>`   `{ accepted: [...], rejected: [...] }`
 * - `DELETE /_sim/log`                            clears the log, the receiver stats and the webhook record
 * - `GET  /_sim/receiver-stats?phoneNumberId=`    `ReceiverStats` of one number; without the id, all by id
 * - `GET|POST|DELETE /_sim/numbers/:id`           read / patch (JSON `NumberConfigPatch`) / reset a number
 * - `POST /_sim/numbers/:id/lifecycle`            `{ event, dropWebhook?, disconnectionInfo? }`: play an event
 *                                                 (mode + webhook, or mode only when dropped) → `WebhookDelivery`
 * - `POST /_sim/numbers/:id/inbound`              `{ from, agoMs?, body?, userId? }`: a customer's message to the number,
 *                                                 sent as a `messages` webhook → `InboundDelivery`; the number then
 *                                                 answers 131047 to free-form sends to `from` once it is 24 h old
 * - `GET  /_sim/webhooks`                         `{ webhooks: [...] }` lifecycle webhooks delivered or dropped
 * - `GET  /_sim/stats`                            connections, requests, log sizes
 */

// ---------------------------------------------------------------------------------------------
// Configuration.

/** An error the simulator answers with, in Meta's terms. */
export interface SimError {
  code: number;
  subcode?: number;
  /** Defaults to 401 for code 190, 500 for 1, 503 for 2, 400 otherwise. */
  httpStatus?: number;
  /** Defaults to Meta's usual message for known codes. */
  message?: string;
  details?: string;
  /** Answer this text (as text/html) instead of Meta's JSON shape: a proxy page, a broken body. */
  rawBody?: string;
}

export type NumberMode = 'normal' | 'offboarded' | 'partner_removed';

/** How the throughput cap is judged; see `NumberConfig.window`. */
export type ThroughputWindow = 'sliding' | 'bucket';

/** How one phone number behaves. Unset numbers use the simulator's defaults. */
export interface NumberConfig {
  /** Accepted sends per second; over it → 130429. 0 = no cap. How it is judged: `window`. */
  throughputPerSec: number;
  /**
   * `sliding` (default): at most `throughputPerSec` accepted sends in any 1,000 ms, judged on the
   * accepted sends' arrival times (the strict reading of Meta's "messages per second"; only an
   * integer cap up to 100,000 can be judged this way, any other cap falls back to the bucket).
   * `bucket`: a token bucket of `throughputPerSec` tokens refilled continuously, which lets up to
   * twice the cap through in some 1 s windows (a burst, then the refill).
   * Either way the refusals are the judgement; what a sender put into each second is measured
   * apart, over every send that arrived (`ReceiverStats.maxAttemptsPerWindow`).
   */
  window: ThroughputWindow;
  /** Pair limit: burst of sends allowed to one recipient; over it → 131056. 0 = no pair limit. */
  pairBurst: number;
  /** Pair limit: one more send to a recipient is allowed every this many ms. */
  pairRefillMs: number;
  /** `offboarded`: every send answers `offboardedError`. `partner_removed`: sends and reads answer 100/33. */
  mode: NumberMode;
  /** The error every send gets while `offboarded` (default 133010; 100/33 is the other documented candidate). */
  offboardedError: SimError;
  /** Added to every answer of this number: fixed part. */
  latencyMs: number;
  /** Added to every answer of this number: uniform random part in [0, jitterMs). */
  jitterMs: number;
  /** Probability (0..1) that a send answers a server error. */
  serverErrorRate: number;
  /** Status of injected server errors: 500 → JSON code 1, 503 → JSON code 2, 502 → an HTML page. */
  serverErrorStatus: 500 | 502 | 503;
  /** Bearer token this number requires; unset → the simulator's `token` option (unset there too → none). */
  token?: string;
  /**
   * Answer of the phone number probe (`GET /:version/:phoneNumberId?fields=`) while `normal`; see
   * `phoneNumberNode` for what `offboarded` changes. Values are Meta's strings, not checked.
   */
  isOnBizApp: boolean;
  /** `CLOUD_API` | `ON_PREMISE` | `NOT_APPLICABLE` (answered while offboarded). */
  platformType: string;
  /** Field `status`: `CONNECTED`, `DISCONNECTED` (answered while offboarded), `PENDING`, `FLAGGED`, `RESTRICTED`, ... */
  phoneStatus: string;
  /** `VERIFIED` | `NOT_VERIFIED` | `EXPIRED`. */
  codeVerificationStatus: string;
  /** `GREEN` | `YELLOW` | `RED` | `UNKNOWN` (Meta also writes `NA`). */
  qualityRating: string;
  /** `TIER_250` | `TIER_1K` | `TIER_10K` | `TIER_100K` | `TIER_UNLIMITED` (older: `TIER_50`). */
  messagingLimitTier: string;
  /** Field `throughput.level`: `STANDARD` | `HIGH` | `NOT_APPLICABLE`. */
  throughputLevel: string;
  displayPhoneNumber: string;
  verifiedName: string;
  /** When set (and `normal`), the number's health entity is `LIMITED` with these `additional_info` lines. */
  limitedInfo?: string[];
  /**
   * Calling (SIP) error codes on the app's health entity, e.g. `[138024]`: the `APP` entity is
   * `BLOCKED` (for messages and SIP calls) with these errors, so the aggregate `can_send_message`
   * is `BLOCKED` while the `PHONE_NUMBER` entity stays as the mode says and sends are accepted
   * (Meta: such an error does not stop messaging). Empty or unset: none.
   */
  appCallingErrors?: number[];
  /** Ids of the other entities in `health_status` (WABA, business portfolio, app). */
  wabaId: string;
  businessId: string;
  appId: string;
  /** When set, successful sends carry `messages[0].message_status` with this value. */
  messageStatus?: string;
}

const simErrorSchema = z.strictObject({
  code: z.number().int(),
  subcode: z.number().int().optional(),
  httpStatus: z.number().int().min(400).max(599).optional(),
  message: z.string().optional(),
  details: z.string().optional(),
  rawBody: z.string().optional(),
});

const patchSchema = z.strictObject({
  throughputPerSec: z.number().min(0).optional(),
  window: z.enum(['sliding', 'bucket']).optional(),
  pairBurst: z.number().int().min(0).optional(),
  pairRefillMs: z.number().positive().optional(),
  mode: z.enum(['normal', 'offboarded', 'partner_removed']).optional(),
  offboardedError: simErrorSchema.optional(),
  latencyMs: z.number().min(0).optional(),
  jitterMs: z.number().min(0).optional(),
  serverErrorRate: z.number().min(0).max(1).optional(),
  serverErrorStatus: z.union([z.literal(500), z.literal(502), z.literal(503)]).optional(),
  token: z.string().optional(),
  isOnBizApp: z.boolean().optional(),
  platformType: z.string().optional(),
  phoneStatus: z.string().optional(),
  codeVerificationStatus: z.string().optional(),
  qualityRating: z.string().optional(),
  messagingLimitTier: z.string().optional(),
  throughputLevel: z.string().optional(),
  displayPhoneNumber: z.string().optional(),
  verifiedName: z.string().optional(),
  limitedInfo: z.array(z.string()).optional(),
  appCallingErrors: z.array(z.number().int().positive()).optional(),
  wabaId: z.string().min(1).optional(),
  businessId: z.string().min(1).optional(),
  appId: z.string().min(1).optional(),
  messageStatus: z.string().optional(),
  /** One-shot: the next N sends answer a server error (`serverErrorStatus`). */
  serverErrorNext: z.number().int().min(0).optional(),
  /** One-shot: the next sends answer these errors, in order (replaces any pending script). */
  errorScript: z.array(simErrorSchema).optional(),
});

/** A change to a number: any `NumberConfig` fields plus the one-shot `serverErrorNext` and `errorScript`. */
export type NumberConfigPatch = z.infer<typeof patchSchema>;

/** Built-in defaults: Meta's documented pair limit, no throughput cap, a connected Cloud API number. */
export const DEFAULT_NUMBER_CONFIG: Readonly<NumberConfig> = Object.freeze({
  throughputPerSec: 0,
  window: 'sliding',
  pairBurst: 45,
  pairRefillMs: 6_000,
  mode: 'normal',
  offboardedError: { code: 133010 },
  latencyMs: 0,
  jitterMs: 0,
  serverErrorRate: 0,
  serverErrorStatus: 503,
  isOnBizApp: true,
  platformType: 'CLOUD_API',
  phoneStatus: 'CONNECTED',
  codeVerificationStatus: 'VERIFIED',
  qualityRating: 'GREEN',
  messagingLimitTier: 'TIER_1K',
  throughputLevel: 'STANDARD',
  displayPhoneNumber: SAMPLE_IDS.displayPhoneNumber,
  verifiedName: 'Sim Business',
  wabaId: SAMPLE_IDS.wabaId,
  businessId: SAMPLE_IDS.ownerBusinessId,
  appId: SAMPLE_IDS.appId,
});

export interface MetaSimulatorOptions {
  /** 0 (default) picks a free port. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Bearer token every request must carry (numbers may override). Unset: any token is accepted. */
  token?: string;
  /** Overrides of `DEFAULT_NUMBER_CONFIG` for every number. */
  defaults?: Partial<NumberConfig>;
  /** Per-number settings at start. */
  numbers?: Record<string, NumberConfigPatch>;
  /** Each log list keeps at most this many entries (oldest dropped first). Default 500,000. */
  maxLogEntries?: number;
  /** Where `lifecycle()` delivers its `account_update` webhooks (also settable later: `setWebhookTarget`). */
  webhook?: WebhookTarget;
}

/** The service's webhook endpoint and the app secret to sign with. */
export interface WebhookTarget {
  /** e.g. `http://127.0.0.1:3000/webhooks/meta`. */
  targetUrl: string;
  appSecret: string;
}

/** The lifecycle events the simulator plays, and the mode each one leaves the number in. */
export const LIFECYCLE_MODES = {
  ACCOUNT_OFFBOARDED: 'offboarded',
  ACCOUNT_RECONNECTED: 'normal',
  PARTNER_REMOVED: 'partner_removed',
} as const satisfies Record<string, NumberMode>;
export type LifecycleEvent = keyof typeof LIFECYCLE_MODES;

export interface LifecycleOptions {
  /**
   * Play "Meta's webhook was lost": the number changes state (usable or not at the probe and for
   * sends) but no webhook is sent. Recorded in `webhooks` with `dropped: true`.
   */
  dropWebhook?: boolean;
  /** `PARTNER_REMOVED` only: `value.disconnection_info`. */
  disconnectionInfo?: DisconnectionInfo;
}

/** One lifecycle webhook the simulator sent, or would have sent and dropped. */
export interface WebhookDelivery {
  /** Shares the send log's sequence, so it orders against sends. */
  seq: number;
  at: number;
  phoneNumberId: string;
  wabaId: string;
  event: LifecycleEvent;
  dropped: boolean;
  /** The HTTP status the service answered; absent when dropped or when no answer came. */
  status?: number;
  /** Why no answer came (connection refused, timeout). */
  error?: string;
  /** The payload (sent, or that would have been). */
  body: WebhookEnvelope;
}

/** Meta's customer service window: a free-form send is refused (131047) this long after the customer's last message. */
export const SERVICE_WINDOW_MS = 24 * 60 * 60 * 1000;

export interface InboundOptions {
  /** How long ago the customer sent it (its `timestamp`); default 0 (now). */
  agoMs?: number;
  /** The text; default `hello`. */
  body?: string;
  /** The customer's business-scoped user id, on the webhook's contact beside the phone number. */
  userId?: string;
}

/** One inbound `messages` webhook the simulator sent (`inbound()`). */
export interface InboundDelivery {
  phoneNumberId: string;
  wabaId: string;
  from: string;
  /** The message's `timestamp` (Unix s). */
  timestamp: number;
  /** The HTTP status the service answered; absent when no answer came. */
  status?: number;
  /** Why no answer came (connection refused, timeout). */
  error?: string;
  body: WebhookEnvelope;
}

// ---------------------------------------------------------------------------------------------
// Log.

/** One accepted send. `seq` is shared with rejected attempts, so together they give arrival order. */
export interface AcceptedMessage {
  seq: number;
  /** Epoch ms with sub-ms precision (performance.timeOrigin + performance.now()). */
  at: number;
  phoneNumberId: string;
  to: string;
  type: string;
  /** The parsed request body. */
  body: Record<string, unknown>;
  wamid: string;
  /** The send's `biz_opaque_callback_data`, when it carried one: the sender's id for the message. */
  clientId?: string;
}

/** One refused send attempt. */
export interface RejectedAttempt {
  seq: number;
  at: number;
  phoneNumberId: string;
  to?: string;
  type?: string;
  httpStatus: number;
  /** Meta's error code answered; for an answer without one (the 502 HTML page), the HTTP status. */
  code: number;
  subcode?: number;
  /** The send's `biz_opaque_callback_data`, when it carried a string one. */
  clientId?: string;
}

export interface SimLog {
  accepted: AcceptedMessage[];
  rejected: RejectedAttempt[];
}

export interface SimStats {
  /** TCP connections opened since start (connection reuse keeps this small). */
  connections: number;
  /** HTTP requests served since start. */
  requests: number;
  accepted: number;
  rejected: number;
  /** Phone-number reads (`GET /:version/:phoneNumberId`, the gate's probes) since start. */
  probes: number;
}

/**
 * What one phone number received, as Meta would count it. Kept apart from the number's config:
 * `resetNumber` keeps it, `clearLog` (and `DELETE /_sim/log`) clears it.
 */
export interface ReceiverStats {
  phoneNumberId: string;
  /** Sends answered 200. */
  accepted: number;
  /** Sends that arrived (`POST .../messages` of the number), whatever they were answered. */
  attempts: number;
  /**
   * The most sends that arrived in any window of `THROUGHPUT_WINDOW_MS` (1,000 ms, strict: a send
   * 999.9 ms after another is in its window), accepted or refused, on arrival times: what a sender
   * put into a second where Meta judges the cap. A sender within its cap keeps this at or under it.
   */
  maxAttemptsPerWindow: number;
  /**
   * The arrival times (epoch ms, sub-ms; stamped on arrival, so a little before the log's `at`) of
   * the first window that held `maxAttemptsPerWindow` sends: evenly spaced, the sender's spacing;
   * a cluster after a gap, sends held up on the way.
   */
  busiestWindow: number[];
  /**
   * The most ACCEPTED sends in any window of 1,000 ms. Under a sliding cap this never exceeds the
   * cap (the simulator refuses the rest): it is no evidence that the sender kept the cap; use
   * `maxAttemptsPerWindow` and `throttled`.
   */
  maxPerWindow: number;
  /** Answers with code 130429 (throughput): a sender within its cap gets none. */
  throttled: number;
  /** Answers with code 131056 (pair limit). */
  pairLimited: number;
  /**
   * Per recipient, every send that arrived (accepted or refused) held against the number's pair
   * limit as a token bucket refilled one send per `pairRefillMs`: the largest burst any recipient's
   * sends needed (the bucket's fill, a GCRA level: `max over i ≤ k of (k − i + 1) − (t_k − t_i) /
   * pairRefillMs`). A sender within the pair limit keeps this at or under `pairBurst`. 0 while the
   * number has no pair limit (`pairBurst` 0).
   */
  maxPairBurst: number;
  /** Accepted sends beyond the first for the same client id (`biz_opaque_callback_data`). */
  duplicates: number;
  /** Client ids accepted more than once, in the order their first duplicate arrived. */
  duplicateIds: string[];
  /**
   * Per recipient (`to` as sent), the client ids of its accepted sends in arrival order; sends
   * without a client id are not listed. Tests check order against the sequence they put in the ids.
   */
  byRecipient: Record<string, string[]>;
  /** Phone-number reads (`GET /:version/:phoneNumberId`), whatever they answered. */
  probes: number;
}

/** Handle of a running simulator. */
export interface MetaSimulator {
  /** `http://127.0.0.1:<port>`: use as the Graph client's `baseUrl`. */
  url: string;
  port: number;
  /** The live log (arrays are cleared in place by `clearLog`). */
  log: SimLog;
  clearLog(): void;
  /** Patches one number (fields as in `POST /_sim/numbers/:id`); returns its new config. Throws on invalid input. */
  setNumber(phoneNumberId: string, patch: NumberConfigPatch): NumberConfig;
  /** Shortcut for the mode; `error` sets the offboarded error (e.g. `{ code: 100, subcode: 33 }`). */
  setMode(phoneNumberId: string, mode: NumberMode, error?: SimError): void;
  /** The next `count` sends of this number answer a server error (`status`, default the number's). */
  failNext(phoneNumberId: string, count: number, status?: 500 | 502 | 503): void;
  /** The next sends of this number answer these errors, one each, in order. */
  scriptErrors(phoneNumberId: string, errors: SimError[]): void;
  /** Back to the simulator's defaults; drops the number's buckets and pending one-shots. */
  resetNumber(phoneNumberId: string): void;
  numberConfig(phoneNumberId: string): NumberConfig;
  stats(): SimStats;
  /** What one number received (zeros for a number that received nothing). */
  receiverStats(phoneNumberId: string): ReceiverStats;
  /** What every number that received something got, by phone number id. */
  receiverStats(): Record<string, ReceiverStats>;
  /**
   * Plays one lifecycle event of a number as Meta would: sets its mode (`LIFECYCLE_MODES`), then
   * delivers the signed `account_update` webhook for the number's `wabaId` to the webhook target,
   * with an `entry[].time` strictly later than the WABA's previous one. With `dropWebhook` the
   * state changes and nothing is delivered ("the webhook was lost"). Resolves once the service
   * answered (any status); a delivery without an answer resolves with `error`. Throws when a
   * webhook is to be delivered and no target is set.
   */
  lifecycle(phoneNumberId: string, event: LifecycleEvent, options?: LifecycleOptions): Promise<WebhookDelivery>;
  /**
   * A customer (`from`) writes to the number: the simulator remembers it (a free-form send to
   * `from` is refused with 131047 once the message is over 24 h old) and delivers the signed
   * `messages` webhook to the webhook target. Rejects when no target is set.
   */
  inbound(phoneNumberId: string, from: string, options?: InboundOptions): Promise<InboundDelivery>;
  setWebhookTarget(target: WebhookTarget | undefined): void;
  /** Lifecycle webhooks delivered or dropped, oldest first; cleared with the log. */
  webhooks: WebhookDelivery[];
  /** Closes the server and every open connection. */
  stop(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Meta's answers.

const KNOWN_MESSAGES: Record<number, string> = {
  1: 'An unknown error occurred',
  2: 'Service temporarily unavailable',
  100: 'Invalid parameter',
  190: 'Invalid OAuth access token - Cannot parse access token',
  130429: 'Rate limit hit',
  131056: '(Business Account, Consumer Account) pair rate limit hit',
  131045: 'Incorrect certificate',
  133010: 'Account not registered',
};

const ACCESS_LOST_MESSAGE =
  'Unsupported post request. Object with ID does not exist, cannot be loaded due to missing permissions, or does not support this operation';

function defaultHttpStatus(code: number): number {
  if (code === 190) return 401;
  if (code === 1) return 500;
  if (code === 2) return 503;
  return 400;
}

let traceCounter = 0;
const fbtraceId = (): string => `Sim${(++traceCounter).toString(36)}${Math.random().toString(36).slice(2, 10)}`;

interface Answer {
  status: number;
  body: string;
  contentType: string;
}

/** Meta's error shape: `{ error: { message, type, code, error_subcode?, error_data?, fbtrace_id } }`. */
function errorAnswer(err: SimError): Answer {
  const status = err.httpStatus ?? defaultHttpStatus(err.code);
  if (err.rawBody !== undefined) return { status, body: err.rawBody, contentType: 'text/html' };
  const text = err.message ?? KNOWN_MESSAGES[err.code] ?? `Error ${err.code}`;
  const error: Record<string, unknown> = {
    message: text.startsWith('(#') || err.code === 190 ? text : `(#${err.code}) ${text}`,
    type: 'OAuthException',
    code: err.code,
  };
  if (err.subcode !== undefined) error.error_subcode = err.subcode;
  if (err.code !== 190) error.error_data = { messaging_product: 'whatsapp', details: err.details ?? text };
  error.fbtrace_id = fbtraceId();
  return jsonAnswer(status, { error });
}

function serverErrorAnswer(status: 500 | 502 | 503): Answer {
  if (status === 502) {
    return { status, body: '<html><body><h1>502 Bad Gateway</h1></body></html>', contentType: 'text/html' };
  }
  return errorAnswer({ code: status === 500 ? 1 : 2, httpStatus: status });
}

const jsonAnswer = (status: number, value: unknown): Answer => ({
  status,
  body: JSON.stringify(value),
  contentType: 'application/json',
});

const invalidParameter = (message: string): SimError => ({ code: 100, message });

/** Meta's limit on `biz_opaque_callback_data` (a string the status webhooks echo). */
export const MAX_OPAQUE_CHARS = 512;

/** The sender's id for a message: its `biz_opaque_callback_data`, when it is a string. */
function clientIdOf(body: unknown): string | undefined {
  return isRecord(body) && typeof body.biz_opaque_callback_data === 'string'
    ? body.biz_opaque_callback_data
    : undefined;
}

/** Meta's checks on a send body; undefined when it is acceptable. */
function validateSendBody(body: unknown): SimError | undefined {
  if (!isRecord(body)) return invalidParameter('Invalid parameter');
  if (body.messaging_product !== 'whatsapp') return invalidParameter('The parameter messaging_product is required.');
  const recipient = body.recipient;
  if (recipient !== undefined && (typeof recipient !== 'string' || !BSUID.test(recipient))) {
    return invalidParameter('Param recipient must be a valid business-scoped user ID.');
  }
  if (customerOfBody(body) === undefined) return invalidParameter('The parameter to is required.');
  if (typeof body.type !== 'string' || body.type === '') return invalidParameter('The parameter type is required.');
  const content = body[body.type];
  if (!isRecord(content)) return invalidParameter(`The parameter ${body.type} is required.`);
  if (body.type === 'text' && (typeof content.body !== 'string' || content.body === '')) {
    return invalidParameter("The parameter text['body'] is required.");
  }
  const opaque = body.biz_opaque_callback_data;
  if (opaque !== undefined && typeof opaque !== 'string') {
    return invalidParameter('Param biz_opaque_callback_data must be a string.');
  }
  if (typeof opaque === 'string' && opaque.length > MAX_OPAQUE_CHARS) {
    return invalidParameter(`Param biz_opaque_callback_data must be at most ${MAX_OPAQUE_CHARS} characters long.`);
  }
  if (body.type === 'template') {
    if (typeof content.name !== 'string') return invalidParameter("The parameter template['name'] is required.");
    const language = content.language;
    if (!isRecord(language) || typeof language.code !== 'string') {
      return invalidParameter("The parameter template['language']['code'] is required.");
    }
  }
  return undefined;
}

/** A business-scoped user id, as Meta's sends take it in `recipient`. */
const BSUID = /^[A-Z]{2}\.(?:ENT\.)?[A-Za-z0-9]{1,128}$/;

/** Whom a send addresses: `to` when given (it wins, as at Meta), else the `recipient` BSUID. */
function customerOfBody(body: unknown): string | undefined {
  if (!isRecord(body)) return undefined;
  if (typeof body.to === 'string' && body.to !== '') return body.to;
  return typeof body.recipient === 'string' && body.recipient !== '' ? body.recipient : undefined;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

// ---------------------------------------------------------------------------------------------
// Per-number state.

/** Classic token bucket: `capacity` tokens, refilled continuously at `refillPerMs`. */
class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly capacity: number,
    private readonly refillPerMs: number,
    now: number,
  ) {
    this.tokens = capacity;
    this.last = now;
  }

  /** Takes one token if there is one. */
  take(now: number): boolean {
    this.tokens = Math.min(this.capacity, this.tokens + (now - this.last) * this.refillPerMs);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/** The per-number throughput check: `allows` before the other checks, `record` once the send is accepted. */
interface ThroughputLimiter {
  allows(now: number): boolean;
  record(now: number): void;
}

/** The bucket as a limiter: a token is taken by the check itself (a send later refused for its pair still spent it). */
class BucketLimiter implements ThroughputLimiter {
  private readonly bucket: TokenBucket;
  constructor(cap: number, now: number) {
    this.bucket = new TokenBucket(cap, cap / 1000, now);
  }
  allows(now: number): boolean {
    return this.bucket.take(now);
  }
  record(): void {}
}

/** Longest cap judged on a sliding window (the ring holds one arrival time per allowed send). */
const MAX_SLIDING_CAP = 100_000;
/** The window the throughput cap, `maxAttemptsPerWindow` and `maxPerWindow` are judged on. */
export const THROUGHPUT_WINDOW_MS = 1_000;

/**
 * At most `cap` accepted sends in any window of `THROUGHPUT_WINDOW_MS`: a ring of the last `cap` accepted
 * arrival times. A send is allowed when fewer than `cap` were accepted, or when the oldest of the
 * last `cap` is at least `THROUGHPUT_WINDOW_MS` old. O(1) per send.
 */
class SlidingWindowLimiter implements ThroughputLimiter {
  private readonly times: Float64Array;
  /** Next slot to write; once the ring is full, also the oldest arrival. */
  private next = 0;
  private size = 0;

  constructor(private readonly cap: number) {
    this.times = new Float64Array(cap);
  }

  allows(now: number): boolean {
    return this.size < this.cap || now - (this.times[this.next] ?? 0) >= THROUGHPUT_WINDOW_MS;
  }

  record(now: number): void {
    this.times[this.next] = now;
    this.next = (this.next + 1) % this.cap;
    if (this.size < this.cap) this.size++;
  }
}

function limiterFor(config: NumberConfig, now: number): ThroughputLimiter | undefined {
  const cap = config.throughputPerSec;
  if (cap <= 0) return undefined;
  const sliding = config.window === 'sliding' && Number.isInteger(cap) && cap <= MAX_SLIDING_CAP;
  return sliding ? new SlidingWindowLimiter(cap) : new BucketLimiter(cap, now);
}

class NumberState {
  throughput?: ThroughputLimiter;
  pairs = new Map<string, TokenBucket>();
  serverErrorNext = 0;
  errorScript: SimError[] = [];

  constructor(public config: NumberConfig) {
    this.resetBuckets();
  }

  resetBuckets(): void {
    this.throughput = limiterFor(this.config, performance.now());
    this.pairs.clear();
  }

  /** Pair-limit check for one recipient; a full bucket is dropped when the map grows large. */
  takePair(to: string, now: number): boolean {
    if (this.config.pairBurst <= 0) return true;
    let bucket = this.pairs.get(to);
    if (!bucket) {
      if (this.pairs.size >= 100_000) this.pairs.clear();
      bucket = new TokenBucket(this.config.pairBurst, 1 / this.config.pairRefillMs, now);
      this.pairs.set(to, bucket);
    }
    return bucket.take(now);
  }
}

/** The most arrival times in any window of `THROUGHPUT_WINDOW_MS`; times must come in order. O(1) amortised. */
class WindowMax {
  max = 0;
  /** The arrival times of the first window that held `max` (a copy each time the max grows). */
  busiest: number[] = [];
  /** Arrival times of the last window, oldest at `head`. */
  private recent: number[] = [];
  private head = 0;

  add(t: number): void {
    this.recent.push(t);
    while (t - (this.recent[this.head] ?? t) >= THROUGHPUT_WINDOW_MS) this.head++;
    if (this.head > 1024 && this.head * 2 > this.recent.length) {
      this.recent = this.recent.slice(this.head);
      this.head = 0;
    }
    if (this.recent.length - this.head > this.max) {
      this.max = this.recent.length - this.head;
      this.busiest = this.recent.slice(this.head);
    }
  }
}

/** Recipients whose pair-bucket fill is kept at once; beyond it, those whose fill has drained to 0 are dropped. */
const MAX_PAIR_LEVELS = 100_000;

/** Running counts behind `ReceiverStats`; O(1) amortised per send. */
class ReceiverTally {
  accepted = 0;
  attempts = 0;
  throttled = 0;
  pairLimited = 0;
  duplicates = 0;
  probes = 0;
  maxPairBurst = 0;
  readonly duplicateIds: string[] = [];
  private readonly clientCounts = new Map<string, number>();
  private readonly byRecipient = new Map<string, string[]>();
  private readonly acceptedWindow = new WindowMax();
  private readonly attemptWindow = new WindowMax();
  /** Per recipient, the fill of a pair bucket charged with every arrival, and when it was last charged. */
  private readonly pairLevels = new Map<string, { level: number; at: number }>();

  /** Every send that arrives, before it is judged: the window and the pair bucket count it whatever its answer. */
  onArrival(t: number, to: string | undefined, pair: { pairBurst: number; pairRefillMs: number }): void {
    this.attempts++;
    this.attemptWindow.add(t);
    if (to === undefined || pair.pairBurst <= 0) return;
    const drained = (p: { level: number; at: number }): number => Math.max(0, p.level - (t - p.at) / pair.pairRefillMs);
    const previous = this.pairLevels.get(to);
    const level = (previous ? drained(previous) : 0) + 1;
    if (!previous && this.pairLevels.size >= MAX_PAIR_LEVELS) {
      for (const [key, p] of this.pairLevels) if (drained(p) === 0) this.pairLevels.delete(key);
    }
    this.pairLevels.set(to, { level, at: t });
    this.maxPairBurst = Math.max(this.maxPairBurst, level);
  }

  onAccepted(t: number, to: string, clientId: string | undefined): void {
    this.accepted++;
    this.acceptedWindow.add(t);
    if (clientId === undefined) return;
    const seen = this.clientCounts.get(clientId) ?? 0;
    this.clientCounts.set(clientId, seen + 1);
    if (seen > 0) this.duplicates++;
    if (seen === 1) this.duplicateIds.push(clientId);
    let ids = this.byRecipient.get(to);
    if (!ids) this.byRecipient.set(to, (ids = []));
    ids.push(clientId);
  }

  onRejected(code: number): void {
    if (code === 130429) this.throttled++;
    if (code === 131056) this.pairLimited++;
  }

  view(phoneNumberId: string): ReceiverStats {
    return {
      phoneNumberId,
      accepted: this.accepted,
      attempts: this.attempts,
      maxAttemptsPerWindow: this.attemptWindow.max,
      busiestWindow: this.attemptWindow.busiest.map((t) => performance.timeOrigin + t),
      maxPerWindow: this.acceptedWindow.max,
      throttled: this.throttled,
      pairLimited: this.pairLimited,
      maxPairBurst: Math.round(this.maxPairBurst * 1000) / 1000,
      duplicates: this.duplicates,
      duplicateIds: [...this.duplicateIds],
      byRecipient: Object.fromEntries([...this.byRecipient].map(([to, ids]) => [to, [...ids]])),
      probes: this.probes,
    };
  }
}

// ---------------------------------------------------------------------------------------------
// The simulator.

/**
 * Starts the simulator and resolves once it listens. Call `stop()` when done (tests: in
 * `afterAll`). Each call is independent: several simulators can run side by side.
 */
export async function startMetaSimulator(options: MetaSimulatorOptions = {}): Promise<MetaSimulator> {
  const defaults: NumberConfig = { ...DEFAULT_NUMBER_CONFIG, ...options.defaults };
  const maxLog = options.maxLogEntries ?? 500_000;
  const numbers = new Map<string, NumberState>();
  const log: SimLog = { accepted: [], rejected: [] };
  const tallies = new Map<string, ReceiverTally>();
  const tally = (id: string): ReceiverTally => {
    let t = tallies.get(id);
    if (!t) tallies.set(id, (t = new ReceiverTally()));
    return t;
  };
  const counters = { connections: 0, requests: 0, seq: 0, probes: 0 };
  const instanceTag = Math.random().toString(36).slice(2, 8);

  const numberState = (id: string): NumberState => {
    let state = numbers.get(id);
    if (!state) {
      state = new NumberState({ ...defaults });
      numbers.set(id, state);
    }
    return state;
  };

  function setNumber(id: string, patch: NumberConfigPatch): NumberConfig {
    const { serverErrorNext, errorScript, ...config } = patchSchema.parse(patch);
    const state = numberState(id);
    state.config = { ...state.config, ...config };
    state.resetBuckets();
    if (serverErrorNext !== undefined) state.serverErrorNext = serverErrorNext;
    if (errorScript !== undefined) state.errorScript = [...errorScript];
    return state.config;
  }

  for (const [id, patch] of Object.entries(options.numbers ?? {})) setNumber(id, patch);

  const now = (): number => performance.timeOrigin + performance.now();

  function pushBounded<T>(list: T[], item: T): void {
    list.push(item);
    if (list.length > maxLog) list.splice(0, Math.ceil(maxLog / 10));
  }

  function reject(phoneNumberId: string, body: unknown, err: SimError, answer: Answer): Answer {
    const entry: RejectedAttempt = {
      seq: ++counters.seq,
      at: now(),
      phoneNumberId,
      httpStatus: answer.status,
      code: err.code,
    };
    if (err.subcode !== undefined) entry.subcode = err.subcode;
    const to = customerOfBody(body);
    if (to !== undefined) entry.to = to;
    if (isRecord(body) && typeof body.type === 'string') entry.type = body.type;
    const clientId = clientIdOf(body);
    if (clientId !== undefined) entry.clientId = clientId;
    pushBounded(log.rejected, entry);
    tally(phoneNumberId).onRejected(err.code);
    return answer;
  }

  const rejectWith = (id: string, body: unknown, err: SimError): Answer => reject(id, body, err, errorAnswer(err));

  /** The send path, in Meta's order of checks: auth, body, then the number's state and limits. */
  function handleSend(phoneNumberId: string, authorization: string | undefined, raw: string): Answer {
    const t = performance.now();
    const state = numberState(phoneNumberId);
    const body = parseJson(raw);
    tally(phoneNumberId).onArrival(t, customerOfBody(body), state.config);
    if (!tokenMatches(state, authorization)) return rejectWith(phoneNumberId, body, { code: 190 });
    const invalid = validateSendBody(body);
    if (invalid) return rejectWith(phoneNumberId, body, invalid);
    const scripted = state.errorScript.shift();
    if (scripted) return rejectWith(phoneNumberId, body, scripted);
    if (state.serverErrorNext > 0 || Math.random() < state.config.serverErrorRate) {
      state.serverErrorNext = Math.max(0, state.serverErrorNext - 1);
      const status = state.config.serverErrorStatus;
      const code = status === 500 ? 1 : status === 503 ? 2 : status; // 502 is an HTML page: no Meta code
      return reject(phoneNumberId, body, { code }, serverErrorAnswer(status));
    }
    const unusable = modeError(state.config);
    if (unusable) return rejectWith(phoneNumberId, body, unusable);
    const message = { ...(body as { type: string } & Record<string, unknown>), to: customerOfBody(body)! };
    if (message.type !== 'template' && outsideWindow(phoneNumberId, message.to)) {
      return rejectWith(phoneNumberId, body, {
        code: 131047,
        message: 'Re-engagement message',
        details:
          'Message failed to send because more than 24 hours have passed since the customer last replied to this number.',
      });
    }
    if (state.throughput && !state.throughput.allows(t)) return rejectWith(phoneNumberId, body, { code: 130429 });
    if (!state.takePair(message.to, t)) return rejectWith(phoneNumberId, body, { code: 131056 });
    state.throughput?.record(t);
    return accept(state, phoneNumberId, body as AcceptedMessage['body'], message.to, t);
  }

  /** Accepts a send to `to` (the body's `to`, else its `recipient`); the log keeps the body as sent. */
  function accept(
    state: NumberState,
    phoneNumberId: string,
    body: AcceptedMessage['body'],
    to: string,
    t: number,
  ): Answer {
    const seq = ++counters.seq;
    const wamid = 'wamid.' + Buffer.from(`SIM${instanceTag}.${seq}.${to}`).toString('base64');
    const entry: AcceptedMessage = { seq, at: now(), phoneNumberId, to, type: body.type as string, body, wamid };
    const clientId = clientIdOf(body);
    if (clientId !== undefined) entry.clientId = clientId;
    pushBounded(log.accepted, entry);
    tally(phoneNumberId).onAccepted(t, to, clientId);
    const message: Record<string, string> = { id: wamid };
    if (state.config.messageStatus) message.message_status = state.config.messageStatus;
    return jsonAnswer(200, {
      messaging_product: 'whatsapp',
      contacts: [BSUID.test(to) ? { input: to, user_id: to } : { input: to, wa_id: to.replace(/\D/g, '') }],
      messages: [message],
    });
  }

  function tokenMatches(state: NumberState, authorization: string | undefined): boolean {
    const expected = state.config.token ?? options.token;
    return expected === undefined || authorization === `Bearer ${expected}`;
  }

  function handlePhoneNumber(phoneNumberId: string, authorization: string | undefined, query: URLSearchParams): Answer {
    const state = numberState(phoneNumberId);
    tally(phoneNumberId).probes++;
    counters.probes++;
    if (!tokenMatches(state, authorization)) return errorAnswer({ code: 190 });
    if (state.config.mode === 'partner_removed') {
      return errorAnswer({ code: 100, subcode: 33, message: ACCESS_LOST_MESSAGE.replace('post', 'get') });
    }
    return jsonAnswer(200, phoneNumberNode(phoneNumberId, state.config, requestedFields(query.get('fields'))));
  }

  function handleControl(
    method: string,
    parts: string[],
    query: URLSearchParams,
    raw: string,
  ): Answer | Promise<Answer> {
    const [, , resource, id, sub] = parts;
    if (resource === 'numbers' && id && sub === 'lifecycle' && parts.length === 5) {
      if (method !== 'POST') return jsonAnswer(405, { error: { message: 'method not allowed' } });
      return controlLifecycle(decodeURIComponent(id), raw);
    }
    if (resource === 'numbers' && id && sub === 'inbound' && parts.length === 5) {
      if (method !== 'POST') return jsonAnswer(405, { error: { message: 'method not allowed' } });
      return controlInbound(decodeURIComponent(id), raw);
    }
    if (resource === 'webhooks' && method === 'GET') return jsonAnswer(200, { webhooks });
    if (resource === 'log' && method === 'GET') return jsonAnswer(200, readLog(query));
    if (resource === 'log' && method === 'DELETE') {
      clearLog();
      return { status: 204, body: '', contentType: 'text/plain' };
    }
    if (resource === 'stats' && method === 'GET') return jsonAnswer(200, stats());
    if (resource === 'receiver-stats' && method === 'GET') {
      const id = query.get('phoneNumberId');
      return jsonAnswer(200, id ? receiverStats(id) : receiverStats());
    }
    if (resource === 'numbers' && id && parts.length === 4) return controlNumber(method, decodeURIComponent(id), raw);
    return jsonAnswer(404, { error: { message: 'unknown simulator route' } });
  }

  function controlNumber(method: string, id: string, raw: string): Answer {
    if (!['GET', 'POST', 'DELETE'].includes(method))
      return jsonAnswer(405, { error: { message: 'method not allowed' } });
    if (method === 'DELETE') numbers.delete(id);
    if (method === 'POST') {
      const parsed = patchSchema.safeParse(parseJson(raw));
      if (!parsed.success) return jsonAnswer(400, { error: { message: z.prettifyError(parsed.error) } });
      setNumber(id, parsed.data);
    }
    const state = numberState(id);
    return jsonAnswer(200, {
      phoneNumberId: id,
      config: state.config,
      pending: { serverErrorNext: state.serverErrorNext, errorScript: state.errorScript },
    });
  }

  function readLog(query: URLSearchParams): SimLog {
    const phoneNumberId = query.get('phoneNumberId');
    const since = Number(query.get('since') ?? 0) || 0;
    const keep = (e: { phoneNumberId: string; seq: number }): boolean =>
      e.seq > since && (phoneNumberId === null || e.phoneNumberId === phoneNumberId);
    return { accepted: log.accepted.filter(keep), rejected: log.rejected.filter(keep) };
  }

  function clearLog(): void {
    log.accepted.length = 0;
    log.rejected.length = 0;
    webhooks.length = 0;
    tallies.clear();
  }

  let webhookTarget = options.webhook;
  const webhooks: WebhookDelivery[] = [];
  /** Last `entry[].time` sent per WABA, so the next event of that WABA is strictly later. */
  const lastEventTime = new Map<string, number>();

  async function lifecycle(
    phoneNumberId: string,
    event: LifecycleEvent,
    opts: LifecycleOptions = {},
  ): Promise<WebhookDelivery> {
    if (!(event in LIFECYCLE_MODES)) throw new Error(`unknown lifecycle event ${String(event)}`);
    const target = webhookTarget;
    if (!opts.dropWebhook && !target)
      throw new Error('no webhook target: start with `webhook` or call setWebhookTarget');
    setNumber(phoneNumberId, { mode: LIFECYCLE_MODES[event] });
    const wabaId = numberState(phoneNumberId).config.wabaId;
    const time = Math.max(Math.floor(Date.now() / 1000), (lastEventTime.get(wabaId) ?? 0) + 1);
    lastEventTime.set(wabaId, time);
    const body = accountUpdatePayload(wabaId, event, { time, disconnectionInfo: opts.disconnectionInfo });
    const delivery: WebhookDelivery = {
      seq: ++counters.seq,
      at: now(),
      phoneNumberId,
      wabaId,
      event,
      dropped: opts.dropWebhook === true,
      body,
    };
    pushBounded(webhooks, delivery);
    if (delivery.dropped || !target) return delivery;
    return Object.assign(delivery, await deliver(target, body));
  }

  /** Sends a signed webhook to the target: the service's answer, or why none came. */
  async function deliver(target: WebhookTarget, body: WebhookEnvelope): Promise<{ status?: number; error?: string }> {
    try {
      return { status: (await sendWebhook({ targetUrl: target.targetUrl, appSecret: target.appSecret, body })).status };
    } catch (err) {
      const cause = (err as { cause?: Error & { code?: string } }).cause;
      return { error: cause?.code ?? cause?.message ?? String(err) };
    }
  }

  /** Epoch ms of each customer's last message to a number (`<phoneNumberId>#<from>`), as `inbound()` sent them. */
  const lastInbound = new Map<string, number>();

  /** A customer the simulator knows wrote more than 24 h ago (one it never saw write: not judged). */
  function outsideWindow(phoneNumberId: string, to: string): boolean {
    const last = lastInbound.get(`${phoneNumberId}#${to}`);
    return last !== undefined && Date.now() - last > SERVICE_WINDOW_MS;
  }

  async function inbound(phoneNumberId: string, from: string, opts: InboundOptions = {}): Promise<InboundDelivery> {
    const target = webhookTarget;
    if (!target) throw new Error('no webhook target: start with `webhook` or call setWebhookTarget');
    const sentAt = Date.now() - (opts.agoMs ?? 0);
    const key = `${phoneNumberId}#${from}`;
    lastInbound.set(key, Math.max(sentAt, lastInbound.get(key) ?? 0));
    const wabaId = numberState(phoneNumberId).config.wabaId;
    const timestamp = Math.floor(sentAt / 1000);
    const body = inboundPayload(wabaId, phoneNumberId, {
      from,
      timestamp,
      ...(opts.body !== undefined ? { body: opts.body } : {}),
      ...(opts.userId !== undefined ? { userId: opts.userId } : {}),
    });
    return { phoneNumberId, wabaId, from, timestamp, body, ...(await deliver(target, body)) };
  }

  const inboundSchema = z.strictObject({
    from: z.string().regex(/^\d{5,20}$/),
    agoMs: z.number().int().nonnegative().optional(),
    body: z.string().min(1).optional(),
    userId: z.string().regex(BSUID).optional(),
  });

  async function controlInbound(id: string, raw: string): Promise<Answer> {
    const parsed = inboundSchema.safeParse(parseJson(raw));
    if (!parsed.success) return jsonAnswer(400, { error: { message: z.prettifyError(parsed.error) } });
    if (!webhookTarget) {
      return jsonAnswer(409, { error: { message: 'no webhook target configured (serve --webhook-target)' } });
    }
    const { from, ...opts } = parsed.data;
    return jsonAnswer(200, await inbound(id, from, opts));
  }

  const lifecycleSchema = z.strictObject({
    event: z.enum(Object.keys(LIFECYCLE_MODES) as [LifecycleEvent, ...LifecycleEvent[]]),
    dropWebhook: z.boolean().optional(),
    disconnectionInfo: z.strictObject({ reason: z.string(), initiated_by: z.string() }).optional(),
  });

  async function controlLifecycle(id: string, raw: string): Promise<Answer> {
    const parsed = lifecycleSchema.safeParse(parseJson(raw));
    if (!parsed.success) return jsonAnswer(400, { error: { message: z.prettifyError(parsed.error) } });
    const { event, ...opts } = parsed.data;
    if (!opts.dropWebhook && !webhookTarget) {
      return jsonAnswer(409, { error: { message: 'no webhook target configured (serve --webhook-target)' } });
    }
    return jsonAnswer(200, await lifecycle(id, event, opts));
  }

  function receiverStats(phoneNumberId: string): ReceiverStats;
  function receiverStats(): Record<string, ReceiverStats>;
  function receiverStats(phoneNumberId?: string): ReceiverStats | Record<string, ReceiverStats> {
    if (phoneNumberId !== undefined) return (tallies.get(phoneNumberId) ?? new ReceiverTally()).view(phoneNumberId);
    return Object.fromEntries([...tallies].map(([id, t]) => [id, t.view(id)]));
  }

  function stats(): SimStats {
    return {
      connections: counters.connections,
      requests: counters.requests,
      accepted: log.accepted.length,
      rejected: log.rejected.length,
      probes: counters.probes,
    };
  }

  /** Routes one request with its whole body read. */
  function route(req: IncomingMessage, raw: string): { answer: Answer | Promise<Answer>; delayMs: number } {
    const [path = '/', search = ''] = (req.url ?? '/').split('?', 2);
    const parts = path.split('/');
    const method = req.method ?? 'GET';
    if (parts[1] === '_sim')
      return { answer: handleControl(method, parts, new URLSearchParams(search), raw), delayMs: 0 };
    const phoneNumberId = parts[2] ? decodeURIComponent(parts[2]) : '';
    const authorization = req.headers.authorization;
    if (method === 'POST' && parts.length === 4 && parts[3] === 'messages' && phoneNumberId) {
      return { answer: handleSend(phoneNumberId, authorization, raw), delayMs: latencyOf(phoneNumberId) };
    }
    if (method === 'GET' && parts.length === 3 && phoneNumberId) {
      const query = new URLSearchParams(search);
      return { answer: handlePhoneNumber(phoneNumberId, authorization, query), delayMs: latencyOf(phoneNumberId) };
    }
    return { answer: errorAnswer({ code: 2500, message: `Unknown path components: ${path}` }), delayMs: 0 };
  }

  function latencyOf(phoneNumberId: string): number {
    const { latencyMs, jitterMs } = numberState(phoneNumberId).config;
    return latencyMs + (jitterMs > 0 ? Math.random() * jitterMs : 0);
  }

  const server = createServer((req, res) => {
    counters.requests++;
    readBody(req, (raw) => {
      const failure = (err: unknown): Answer =>
        jsonAnswer(500, { error: { message: `simulator failure: ${String(err)}` } });
      let result: { answer: Answer | Promise<Answer>; delayMs: number };
      try {
        result = route(req, raw);
      } catch (err) {
        result = { answer: failure(err), delayMs: 0 };
      }
      const { answer, delayMs } = result;
      if (answer instanceof Promise) {
        answer.then(
          (a) => write(res, a),
          (err: unknown) => write(res, failure(err)),
        );
      } else if (delayMs > 0) setTimeout(() => write(res, answer), delayMs);
      else write(res, answer);
    });
  });
  server.on('connection', () => counters.connections++);

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port, address } = server.address() as AddressInfo;

  return {
    url: `http://${address}:${port}`,
    port,
    log,
    clearLog,
    setNumber,
    setMode: (id, mode, error) => setNumber(id, error ? { mode, offboardedError: error } : { mode }),
    failNext: (id, count, status) =>
      setNumber(id, status ? { serverErrorNext: count, serverErrorStatus: status } : { serverErrorNext: count }),
    scriptErrors: (id, errors) => setNumber(id, { errorScript: errors }),
    resetNumber: (id) => numbers.delete(id),
    numberConfig: (id) => ({ ...numberState(id).config }),
    stats,
    receiverStats,
    lifecycle,
    inbound,
    setWebhookTarget: (target) => {
      webhookTarget = target;
    },
    webhooks,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

const MAX_BODY_BYTES = 1024 * 1024;

/** Reads the whole body as UTF-8; a body over 1 MB is cut (and then fails validation as bad JSON). */
function readBody(req: IncomingMessage, done: (raw: string) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  req.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size <= MAX_BODY_BYTES) chunks.push(chunk);
  });
  req.on('end', () =>
    done(chunks.length === 1 ? (chunks[0] as Buffer).toString('utf8') : Buffer.concat(chunks).toString('utf8')),
  );
}

function write(res: ServerResponse, answer: Answer): void {
  if (res.destroyed) return;
  res.writeHead(answer.status, {
    'content-type': answer.contentType,
    'content-length': Buffer.byteLength(answer.body),
  });
  res.end(answer.body);
}

function parseJson(raw: string): unknown {
  if (raw === '') return undefined;
  try {
    return JSON.parse(raw);
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// The phone number node (the probe).

/** The fields the probe models, in Meta's names. */
export const PHONE_NUMBER_FIELDS = [
  'id',
  'display_phone_number',
  'verified_name',
  'status',
  'platform_type',
  'is_on_biz_app',
  'code_verification_status',
  'quality_rating',
  'messaging_limit_tier',
  'throughput',
  'health_status',
] as const;
export type PhoneNumberField = (typeof PHONE_NUMBER_FIELDS)[number];

/**
 * Without `fields=`, Meta answers a default set (no `status`, `health_status` nor tier); the
 * simulator adds `is_on_biz_app`, which its earlier answer always carried.
 */
const DEFAULT_FIELDS: readonly PhoneNumberField[] = [
  'verified_name',
  'code_verification_status',
  'display_phone_number',
  'quality_rating',
  'platform_type',
  'throughput',
  'is_on_biz_app',
];

/** `fields=a,b,throughput{level}` → the modelled fields asked for (unknown ones are ignored, not an error). */
function requestedFields(param: string | null): readonly PhoneNumberField[] {
  if (param === null || param.trim() === '') return DEFAULT_FIELDS;
  const known = new Set<string>(PHONE_NUMBER_FIELDS);
  const names = param.split(',').map((f) => f.replace(/\{.*$/, '').trim());
  return [...new Set(names)].filter((f): f is PhoneNumberField => known.has(f));
}

type HealthLevel = 'AVAILABLE' | 'LIMITED' | 'BLOCKED';

/** One `health_status.entities[]` item. */
export interface HealthEntity {
  entity_type: 'PHONE_NUMBER' | 'WABA' | 'BUSINESS' | 'APP' | (string & {});
  id: string;
  can_send_message: HealthLevel;
  /** Answered on the `PHONE_NUMBER` and `APP` entities: whether SIP calls can be received. */
  can_receive_call_sip?: HealthLevel;
  additional_info?: string[];
  errors?: Array<{ error_code: number; error_description: string; possible_solution: string }>;
}

/**
 * The phone number node as Meta answers it, limited to `fields` plus `id`. By mode:
 * - `normal`: the config's values (`CONNECTED`, `CLOUD_API`, health `AVAILABLE`, or `LIMITED`
 *   with `additional_info` when `limitedInfo` is set).
 * - `offboarded`: the Cloud API companion is gone until `ACCOUNT_RECONNECTED` (Meta: sends fail
 *   meanwhile, partner access to the WABA stays). So `platform_type` is `NOT_APPLICABLE` (Meta's
 *   value for a number registered on no API platform), `status` is `DISCONNECTED`, and
 *   `health_status` is `BLOCKED`: the `PHONE_NUMBER` entity is `BLOCKED` with one error naming the
 *   disconnection (its `error_code` is the number's `offboardedError` code, what sends get); the
 *   WABA, business and app entities stay `AVAILABLE`. `is_on_biz_app` (the client is still on the
 *   Business app), verification, quality, tier and throughput are unchanged. Meta documents none of
 *   this for offboarded numbers: it is the simulator's model.
 * In every mode, `appCallingErrors` makes the `APP` entity `BLOCKED` with those errors (so the
 * aggregate is `BLOCKED`) and leaves the `PHONE_NUMBER` entity alone. The `PHONE_NUMBER` and `APP`
 * entities carry `can_receive_call_sip` as Meta's health-status page shows them.
 * (`partner_removed` never gets here: the read answers 100/33.)
 */
export function phoneNumberNode(
  phoneNumberId: string,
  config: NumberConfig,
  fields: readonly PhoneNumberField[] = PHONE_NUMBER_FIELDS,
): Record<string, unknown> {
  const offboarded = config.mode === 'offboarded';
  const node: Record<string, unknown> = {};
  for (const field of fields) {
    if (field === 'display_phone_number') node[field] = config.displayPhoneNumber;
    if (field === 'verified_name') node[field] = config.verifiedName;
    if (field === 'status') node[field] = offboarded ? 'DISCONNECTED' : config.phoneStatus;
    if (field === 'platform_type') node[field] = offboarded ? 'NOT_APPLICABLE' : config.platformType;
    if (field === 'is_on_biz_app') node[field] = config.isOnBizApp;
    if (field === 'code_verification_status') node[field] = config.codeVerificationStatus;
    if (field === 'quality_rating') node[field] = config.qualityRating;
    if (field === 'messaging_limit_tier') node[field] = config.messagingLimitTier;
    if (field === 'throughput') node[field] = { level: config.throughputLevel };
    if (field === 'health_status') node[field] = healthStatus(phoneNumberId, config);
  }
  node.id = phoneNumberId;
  return node;
}

function healthStatus(phoneNumberId: string, config: NumberConfig): Record<string, unknown> {
  const phone: HealthEntity = {
    entity_type: 'PHONE_NUMBER',
    id: phoneNumberId,
    can_send_message: 'AVAILABLE',
    can_receive_call_sip: 'AVAILABLE',
  };
  if (config.mode === 'offboarded') {
    phone.can_send_message = 'BLOCKED';
    phone.can_receive_call_sip = 'BLOCKED';
    phone.errors = [
      {
        error_code: config.offboardedError.code,
        error_description:
          'The Cloud API companion of this coexistence number was disconnected (ACCOUNT_OFFBOARDED): the WhatsApp Business app was reinstalled, moved to another device or re-registered.',
        possible_solution:
          'Wait for the ACCOUNT_RECONNECTED webhook; reonboarding usually completes within minutes once the business completes registration in the app.',
      },
    ];
  } else if (config.limitedInfo && config.limitedInfo.length > 0) {
    phone.can_send_message = 'LIMITED';
    phone.additional_info = [...config.limitedInfo];
  }
  const entities: HealthEntity[] = [
    phone,
    { entity_type: 'WABA', id: config.wabaId, can_send_message: 'AVAILABLE' },
    { entity_type: 'BUSINESS', id: config.businessId, can_send_message: 'AVAILABLE' },
    appEntity(config),
  ];
  // Overall: BLOCKED if any entity is, else LIMITED if any is, else AVAILABLE (Meta's rule).
  const levels = entities.map((e) => e.can_send_message);
  const overall = levels.includes('BLOCKED') ? 'BLOCKED' : levels.includes('LIMITED') ? 'LIMITED' : 'AVAILABLE';
  return { can_send_message: overall, entities };
}

/** The app's entity: `BLOCKED` with the number's `appCallingErrors` (the wording is the simulator's). */
function appEntity(config: NumberConfig): HealthEntity {
  const codes = config.appCallingErrors ?? [];
  if (codes.length === 0) {
    return { entity_type: 'APP', id: config.appId, can_send_message: 'AVAILABLE', can_receive_call_sip: 'AVAILABLE' };
  }
  return {
    entity_type: 'APP',
    id: config.appId,
    can_send_message: 'BLOCKED',
    can_receive_call_sip: 'BLOCKED',
    errors: codes.map((code) => ({
      error_code: code,
      error_description: `Calling over SIP is not available for this app (error ${code}): its SIP settings for the business phone number are invalid or unreachable.`,
      possible_solution:
        "Check the SIP server configured in the phone number's call settings (host, port, TLS certificate, credentials).",
    })),
  };
}

function modeError(config: NumberConfig): SimError | undefined {
  if (config.mode === 'offboarded') return config.offboardedError;
  if (config.mode === 'partner_removed') return { code: 100, subcode: 33, message: ACCESS_LOST_MESSAGE };
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Webhooks.

export interface SendWebhookInput {
  /** The service's webhook URL, e.g. `http://127.0.0.1:3000/webhooks/meta`. */
  targetUrl: string;
  /** Signs the exact bytes sent, like Meta (`X-Hub-Signature-256`). */
  appSecret: string;
  /** A payload object (serialised once) or the exact text to send. */
  body: unknown;
  /** Default 10 s. */
  timeoutMs?: number;
}

export interface SendWebhookResult {
  /** HTTP status the service answered (Meta counts anything but 200 as a failure). */
  status: number;
  /** The service's answer body, as text. */
  responseBody: string;
  /** The exact bytes sent and their signature header value, for assertions. */
  sentBody: string;
  signature: string;
}

/**
 * POSTs one webhook the way Meta delivers it: JSON body, `X-Hub-Signature-256: sha256=<hmac>` of
 * the exact bytes. Does not retry. Rejects only when no HTTP answer came (connection refused,
 * timeout); any status, 200 or not, resolves.
 */
export async function sendWebhook(input: SendWebhookInput): Promise<SendWebhookResult> {
  const sentBody = typeof input.body === 'string' ? input.body : JSON.stringify(input.body);
  const signature = signBody(sentBody, input.appSecret);
  const res = await fetch(input.targetUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json', [SIGNATURE_HEADER]: signature, 'user-agent': 'facebookexternalua' },
    body: sentBody,
    signal: AbortSignal.timeout(input.timeoutMs ?? 10_000),
  });
  return { status: res.status, responseBody: await res.text(), sentBody, signature };
}
