import type { MetaErrorInfo } from '../../contracts';

/**
 * The ONE place Meta (Graph / Cloud API) errors are classified. Everything that decides "retry,
 * give up, or close the WABA's gate" after a send asks `classifyMetaError` (directly or through
 * `GraphApiError.errorClass`); nothing else in the code base looks at Meta error codes. What a
 * class then does to a message, its gate, its token and the pacer, for the direct send and the
 * drain alike, is the send-outcome policy's (src/sending/outcome.ts).
 *
 * Classes:
 * - `retry`: transient. Send the same message again later (after `retryAfterMs` at least). Cloud
 *   API has no idempotency key, so a retry after an ambiguous failure can send twice (see
 *   `GraphApiError.mayHaveBeenSent`).
 * - `permanent`: this message will never go out as it is. Fail it; other messages are unaffected.
 * - `account_unusable`: the sending account (number, WABA or our access to it) cannot send at all.
 *   Close the WABA's gate and queue (lifecycle event `SEND_ACCOUNT_UNUSABLE`); do not fail the message.
 *
 * Decision table (codes from meta-whatsapp.md §5 and §3; first matching row wins):
 *
 * | code                     | subcode | class            | reason                    | wait      | scope        | why |
 * |--------------------------|---------|------------------|---------------------------|-----------|--------------|-----|
 * | -1 (NETWORK_ERROR_CODE)  |         | retry            | network_error             | 1 s       |              | refused, reset, DNS, timeout: never reached Meta or no answer |
 * | 100                      | 33      | account_unusable | access_lost               |           | waba         | seen after a coexistence client disconnects: object missing / no permission |
 * | 0, 190                   |         | account_unusable | auth_failed               |           | waba         | token invalid or expired: every send will fail until fixed; alert |
 * | 133010                   |         | account_unusable | number_not_registered     |           | phone_number | number deregistered (likely answer while offboarded) |
 * | 131045                   |         | account_unusable | number_registration_error |           | phone_number | registration / certificate problem |
 * | 131031, 368              |         | account_unusable | account_restricted        |           | waba         | account locked, restricted or disabled for policy; alert |
 * | 130429                   |         | retry            | throughput_limit          | 1 s       | phone_number | per-number msg/s exceeded; the window is 1 s |
 * | 131056                   |         | retry            | pair_rate_limit           | 4 s (4^n) | recipient    | too many to this one user: pace THAT recipient (`pairLimitBackoffMs`), not the number |
 * | 4                        |         | retry            | app_rate_limit            | 60 s      | app          | app-level call limit |
 * | 80007                    |         | retry            | waba_rate_limit           | 60 s      | waba         | WABA-level call limit |
 * | 131057, 2494100          |         | retry            | maintenance               | 30 s      | phone_number | account in maintenance (e.g. throughput upgrade, ≤ 1 min) |
 * | 1, 2, 131000, 131016, 133004 |     | retry            | meta_unavailable          | 5 s       |              | unknown / temporary server-side errors ("retry, limited") |
 * | 131047, 470              |         | permanent        | service_window_closed     |           |              | > 24 h since the user's last message: only templates allowed |
 * | 131026                   |         | permanent        | undeliverable             |           |              | recipient cannot receive (not on WhatsApp, old app, …) |
 * | 131048                   |         | permanent        | spam_rate_limit           |           |              | spam limit: resending makes it worse |
 * | 131049                   |         | permanent        | engagement_limit          |           |              | Meta chose not to deliver (ecosystem engagement) |
 * | 131050                   |         | permanent        | user_opted_out            |           |              | user stopped marketing messages |
 * | 132000–132016            |         | permanent        | template_error            |           |              | template missing, bad params, paused (132015), disabled (132016) |
 * | 100 (other subcodes)     |         | permanent        | invalid_parameter         |           |              | the request itself is wrong |
 * | -2 (UNEXPECTED_RESPONSE_CODE), HTTP 4xx except 429 | permanent | unexpected_response | |   | a non-Meta body with a client error (wrong URL, proxy refusal) |
 * | -2 (UNEXPECTED_RESPONSE_CODE), any other status | retry | unexpected_response | 5 s |        | non-Meta body on 2xx / 5xx / 429: may be transient (2xx: may have sent) |
 * | any other code           | HTTP 5xx | retry           | server_error              | 5 s       |              | Meta (or a proxy) failed |
 * | any other code           | HTTP 429 | retry           | http_429                  | 5 s       |              | a throttling proxy; Meta itself answers 400 + 130429 |
 * | any other code           | HTTP 4xx / none | permanent | unknown_error           |           |              | unknown: do not guess-retry (a retry can duplicate) |
 */

/** What the caller must do about a failed Meta call. See the table at the top of this file. */
export type ErrorClass = 'retry' | 'permanent' | 'account_unusable';

/**
 * What has to slow down or stop when the error repeats: the one recipient (pair limit), the phone
 * number, the WABA or the whole app. Absent when the error is about the message itself.
 */
export type ErrorScope = 'recipient' | 'phone_number' | 'waba' | 'app';

/** The verdict of `classifyMetaError`. */
export interface ErrorClassification {
  class: ErrorClass;
  /** Minimum wait before retrying; only on `retry`. */
  retryAfterMs?: number;
  /** Stable, machine-readable reason (snake_case), safe to store and to alert on. */
  reason: string;
  /** Who must be paced or stopped (131056 → `recipient`: pace that recipient, keep sending to others). */
  scope?: ErrorScope;
}

/** Code used for failures that never produced an HTTP answer: connection refused, reset, DNS, timeout. */
export const NETWORK_ERROR_CODE = -1;
/** Code used when Meta (or something in front of it) answered with a body that is not Meta's shape. */
export const UNEXPECTED_RESPONSE_CODE = -2;

/** Meta's throughput error (messages/s per number). */
export const THROUGHPUT_LIMIT_CODE = 130429;
/** Meta's pair rate limit error (same recipient too often). */
export const PAIR_RATE_LIMIT_CODE = 131056;

type Rule = ErrorClassification;

const SECOND = 1_000;

/** Exact-code rules. Ranges and special cases are handled in `classifyMetaError`. */
const RULES: ReadonlyMap<number, Rule> = new Map<number, Rule>([
  [NETWORK_ERROR_CODE, { class: 'retry', reason: 'network_error', retryAfterMs: 1 * SECOND }],

  [0, { class: 'account_unusable', reason: 'auth_failed', scope: 'waba' }],
  [190, { class: 'account_unusable', reason: 'auth_failed', scope: 'waba' }],
  [133010, { class: 'account_unusable', reason: 'number_not_registered', scope: 'phone_number' }],
  [131045, { class: 'account_unusable', reason: 'number_registration_error', scope: 'phone_number' }],
  [131031, { class: 'account_unusable', reason: 'account_restricted', scope: 'waba' }],
  [368, { class: 'account_unusable', reason: 'account_restricted', scope: 'waba' }],

  [
    THROUGHPUT_LIMIT_CODE,
    { class: 'retry', reason: 'throughput_limit', retryAfterMs: 1 * SECOND, scope: 'phone_number' },
  ],
  [PAIR_RATE_LIMIT_CODE, { class: 'retry', reason: 'pair_rate_limit', retryAfterMs: 4 * SECOND, scope: 'recipient' }],
  [4, { class: 'retry', reason: 'app_rate_limit', retryAfterMs: 60 * SECOND, scope: 'app' }],
  [80007, { class: 'retry', reason: 'waba_rate_limit', retryAfterMs: 60 * SECOND, scope: 'waba' }],
  [131057, { class: 'retry', reason: 'maintenance', retryAfterMs: 30 * SECOND, scope: 'phone_number' }],
  [2494100, { class: 'retry', reason: 'maintenance', retryAfterMs: 30 * SECOND, scope: 'phone_number' }],
  [1, { class: 'retry', reason: 'meta_unavailable', retryAfterMs: 5 * SECOND }],
  [2, { class: 'retry', reason: 'meta_unavailable', retryAfterMs: 5 * SECOND }],
  [131000, { class: 'retry', reason: 'meta_unavailable', retryAfterMs: 5 * SECOND }],
  [131016, { class: 'retry', reason: 'meta_unavailable', retryAfterMs: 5 * SECOND }],
  [133004, { class: 'retry', reason: 'meta_unavailable', retryAfterMs: 5 * SECOND }],

  [131047, { class: 'permanent', reason: 'service_window_closed' }],
  [470, { class: 'permanent', reason: 'service_window_closed' }],
  [131026, { class: 'permanent', reason: 'undeliverable' }],
  [131048, { class: 'permanent', reason: 'spam_rate_limit' }],
  [131049, { class: 'permanent', reason: 'engagement_limit' }],
  [131050, { class: 'permanent', reason: 'user_opted_out' }],
  [100, { class: 'permanent', reason: 'invalid_parameter' }],
]);

const ACCESS_LOST: Rule = { class: 'account_unusable', reason: 'access_lost', scope: 'waba' };
const TEMPLATE_ERROR: Rule = { class: 'permanent', reason: 'template_error' };
const SERVER_ERROR: Rule = { class: 'retry', reason: 'server_error', retryAfterMs: 5 * SECOND };
const HTTP_429: Rule = { class: 'retry', reason: 'http_429', retryAfterMs: 5 * SECOND };
const UNEXPECTED_RETRY: Rule = { class: 'retry', reason: 'unexpected_response', retryAfterMs: 5 * SECOND };
const UNEXPECTED_PERMANENT: Rule = { class: 'permanent', reason: 'unexpected_response' };
const UNKNOWN: Rule = { class: 'permanent', reason: 'unknown_error' };

/**
 * Classifies one Meta error: from a send's HTTP answer (`httpStatus` set), from a `failed` status
 * webhook's `errors[]` (no `httpStatus`), or a network failure (`code: NETWORK_ERROR_CODE`).
 * Pure and total: every input gets a class; unknown codes are `permanent` unless the HTTP status
 * says the server failed (5xx, 429). Returns a fresh object the caller may modify.
 */
export function classifyMetaError(e: { code: number; subcode?: number; httpStatus?: number }): ErrorClassification {
  return { ...pickRule(e) };
}

function pickRule(e: { code: number; subcode?: number; httpStatus?: number }): Rule {
  if (e.code === 100 && e.subcode === 33) return ACCESS_LOST;
  const exact = RULES.get(e.code);
  if (exact) return exact;
  if (e.code >= 132000 && e.code <= 132016) return TEMPLATE_ERROR;
  if (e.code === UNEXPECTED_RESPONSE_CODE) return classifyUnexpected(e.httpStatus);
  return classifyUnknown(e.httpStatus);
}

/** A body we could not read: only a 4xx that is not 429 is treated as "will never work". */
function classifyUnexpected(httpStatus: number | undefined): Rule {
  if (httpStatus !== undefined && httpStatus >= 400 && httpStatus < 500 && httpStatus !== 429) {
    return UNEXPECTED_PERMANENT;
  }
  return UNEXPECTED_RETRY;
}

function classifyUnknown(httpStatus: number | undefined): Rule {
  if (httpStatus !== undefined && httpStatus >= 500) return SERVER_ERROR;
  if (httpStatus === 429) return HTTP_429;
  return UNKNOWN;
}

/**
 * Wait after a recipient's pair rate limit (131056) refused a message's n-th attempt: 4^n seconds
 * (n = 1 → 4 s, 2 → 16 s, 3 → 64 s, …), capped at `maxMs` (default 1,024 s). The send-outcome
 * policy (src/sending/outcome.ts) pauses the recipient and retries the message after it, for the
 * direct send and the drain alike; other recipients keep going meanwhile.
 */
export function pairLimitBackoffMs(attempt: number, maxMs = 1_024 * SECOND): number {
  const n = Math.max(1, Math.floor(attempt));
  return Math.min(maxMs, 4 ** n * SECOND);
}

/** Fields of a `GraphApiError`, as parsed from Meta's error body or built for a network failure. */
export interface GraphApiErrorFields extends MetaErrorInfo {
  /** See `GraphApiError.mayHaveBeenSent`. Defaults to false. */
  mayHaveBeenSent?: boolean;
  cause?: unknown;
}

/**
 * Thrown by the Graph client for every failed call: Meta's error answers, unreadable answers
 * (`UNEXPECTED_RESPONSE_CODE`) and network failures (`NETWORK_ERROR_CODE`). Its classification is
 * computed once, at construction, by `classifyMetaError`; callers branch on `errorClass`.
 */
export class GraphApiError extends Error {
  override readonly name = 'GraphApiError';
  readonly code: number;
  readonly subcode?: number;
  readonly details?: string;
  readonly fbtraceId?: string;
  readonly httpStatus?: number;
  readonly errorClass: ErrorClass;
  readonly reason: string;
  readonly retryAfterMs?: number;
  readonly scope?: ErrorScope;
  /**
   * True when the request may have reached Meta and been accepted although we saw a failure
   * (timeout or connection reset after sending, a 2xx answer we could not read). Retrying then
   * risks a duplicate message; false when the request certainly did not send (connection refused,
   * or Meta answered with an error).
   */
  readonly mayHaveBeenSent: boolean;

  constructor(fields: GraphApiErrorFields) {
    super(fields.message, fields.cause === undefined ? undefined : { cause: fields.cause });
    this.code = fields.code;
    this.subcode = fields.subcode;
    this.details = fields.details;
    this.fbtraceId = fields.fbtraceId;
    this.httpStatus = fields.httpStatus;
    this.mayHaveBeenSent = fields.mayHaveBeenSent ?? false;
    const verdict = classifyMetaError(fields);
    this.errorClass = verdict.class;
    this.reason = verdict.reason;
    this.retryAfterMs = verdict.retryAfterMs;
    this.scope = verdict.scope;
  }

  /**
   * True when the number's throughput window was exceeded (130429): every send of that number
   * must pause for `retryAfterMs`, not just this one.
   */
  get pausesNumber(): boolean {
    return this.code === THROUGHPUT_LIMIT_CODE;
  }

  /** True when only this recipient must be paced (pair rate limit, 131056). */
  get pacesRecipient(): boolean {
    return this.scope === 'recipient';
  }

  /** The plain-data form recorded on a failed message (`SendOutcome.error`); no undefined keys. */
  toMetaErrorInfo(): MetaErrorInfo {
    const info: MetaErrorInfo = { code: this.code, message: this.message };
    if (this.subcode !== undefined) info.subcode = this.subcode;
    if (this.details !== undefined) info.details = this.details;
    if (this.fbtraceId !== undefined) info.fbtraceId = this.fbtraceId;
    if (this.httpStatus !== undefined) info.httpStatus = this.httpStatus;
    return info;
  }

  /**
   * Builds the error for a call that got no HTTP answer. `cause` is what fetch threw; `timedOut`
   * says our own deadline fired. Always class `retry`, code `NETWORK_ERROR_CODE`; `details` names
   * the low-level cause (`ECONNREFUSED`, `timeout`, …).
   */
  static fromNetworkFailure(cause: unknown, timedOut: boolean): GraphApiError {
    const low = timedOut ? 'timeout' : networkCauseCode(cause);
    return new GraphApiError({
      code: NETWORK_ERROR_CODE,
      message: timedOut ? 'Graph API request timed out' : `Graph API request failed: ${low}`,
      details: low,
      mayHaveBeenSent: !NOT_SENT_CAUSES.has(low),
      cause,
    });
  }
}

/** Low-level failures that happen before a byte of the request is sent. */
const NOT_SENT_CAUSES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_CONNECT_TIMEOUT',
]);

/**
 * fetch wraps socket errors as `TypeError('fetch failed', { cause })`: returns the first
 * errno-style code in the cause chain (`ECONNREFUSED`), else the innermost message.
 */
function networkCauseCode(err: unknown): string {
  let current: unknown = err;
  let message = String(err);
  // Duck-typed, not `instanceof Error`: errors from another realm (Jest's sandbox, vm) fail instanceof.
  for (let depth = 0; depth < 5 && typeof current === 'object' && current !== null; depth++) {
    const { code, message: text, cause } = current as { code?: unknown; message?: unknown; cause?: unknown };
    if (typeof code === 'string') return code;
    if (typeof text === 'string') message = text;
    current = cause;
  }
  return message;
}

/** True for a `GraphApiError`; a type guard for `catch (e: unknown)` blocks. */
export function isGraphApiError(e: unknown): e is GraphApiError {
  return e instanceof GraphApiError;
}
