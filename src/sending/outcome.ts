import { pairLimitBackoffMs, type GraphApiError } from '../adapters/graph/errors';
import { REASONS, type MetaErrorInfo } from '../contracts';
import type { LedgeredAttempt } from './ledger';

/**
 * The send-outcome policy: the one function (`decideSendOutcome`) from what a send attempt
 * answered (src/sending/ledger.ts `sendWithLedger`, which classifies Meta's answer through
 * src/sending/attempt.ts and src/adapters/graph/errors.ts) to what happens next, for the direct
 * send (`admit`, src/sending/send.activities.ts) and the drain (src/sending/drain.activities.ts)
 * alike. Pure: no I/O, no clock. The callers only carry the decision out, each with its own means
 * (the direct send throws a retryable failure for Temporal to retry `admit`, requeues, tells the
 * lifecycle workflow; the drain sleeps and loops, leaves the entry queued, stops).
 *
 * | answer (`LedgeredAttempt`)           | message                                       | gate  | token | pacer                  |
 * |---------------------------------------|-----------------------------------------------|-------|-------|------------------------|
 * | sent (a wamid), already_sent          | sent, `attempts` n                            |       |       |                        |
 * | failed (class `permanent`)            | failed: Meta's reason and error               |       |       |                        |
 * | window_closed (not POSTed)            | failed `service_window_closed`, n − 1         |       |       |                        |
 * | in_doubt_give_up                      | failed `in_doubt`                             |       |       |                        |
 * | unusable (`account_unusable`)         | stays queued                                  | close |       |                        |
 * | credentials (`auth_failed`: 0, 190)   | stays queued                                  |       | pause |                        |
 * | retry 130429 (throughput)             | retry after 1 s (the pause), refused          |       |       | pause number 1 s       |
 * | retry 131056 (pair limit)             | retry after 4^n s (≤ 1,024 s), refused        |       |       | pause recipient 4^n s  |
 * | retry, any other                      | retry after B(n), refused                     |       |       |                        |
 * | retry, answer lost (`mayHaveBeenSent`)| retry after max(B(n), grace†), answer_lost    |       |       |                        |
 * | any retry at n ≥ `maxAttempts`        | failed `retries_exhausted`: Meta's error ‡    |       |       | as the retry's row     |
 * | in_doubt_wait (ms)                    | retry after ms†, in_doubt (not an attempt)    |       |       |                        |
 * | not_sent (withdrawn before its POST)  | retry after 1 s, not_sent (not an attempt)    |       |       |                        |
 *
 * n: the message's attempt (its first POST is 1; the direct send counts its refused attempts,
 * `MessageDoc.attempts` + 1). B(n) = max(w, min(30 s, w × 2^(n−1))), w the error's `retryAfterMs`
 * (1 s when it names none): Meta's wait at least, doubling per attempt up to 30 s (5xx: 5, 10,
 * 20, 30 s; app or WABA limit: 60 s each time). † The drain looks again at most every
 * `IN_DOUBT_RECHECK_MS` (a look is a few reads, and a status webhook confirming the send settles it
 * sooner); the direct send waits the whole time (each look costs one of Temporal's attempts of
 * `admit`). That is the only place the two senders differ. Retries exhausted: the drain counts its
 * attempts (`maxAttempts`); for the direct send Temporal's retry policy does, and the send workflow
 * then fails the message `retries_exhausted` through `settleDirect`. ‡ Not an answer lost: that
 * message may have been delivered, so it is retried as `answer_lost` and the ledger decides (a
 * status webhook settles it as sent; otherwise `IN_DOUBT_POLICY`: failed `in_doubt`, or one more
 * POST, whose answer then ends it). The direct send does the same when Temporal's attempts run
 * out on a lost answer: the send workflow gives the ledger a round of attempts of its own, and a
 * message still in doubt after that fails `in_doubt`.
 *
 * The pair limit's back-off (131056), one rule: 4^n s for the message's n-th attempt
 * (`pairLimitBackoffMs`: 4 s, 16 s, 64 s, … capped at 1,024 s); the recipient is paused that long
 * for every worker and the message retried after it. It is Meta's rule (meta-whatsapp.md §5: "back
 * off 4^n s"), and the limit's shape asks for it: about one message per 6 s, with bursts of up to
 * ~45 borrowed from the future, so one refusal can mean minutes of overdraft, which a fixed wait
 * keeps hitting. The drain did this already; the direct send waited a fixed 4 s (`retryAfterMs`),
 * so a recipient still over its limit refused every attempt until Temporal's attempts ran out
 * (about 30 s). n counts the message's failed attempts, not only its 131056 ones (the direct send
 * keeps no other count; at worst a recipient waits longer). The number's throughput pause (130429)
 * does not grow: it is Meta's 1 s window, and it holds back every recipient.
 *
 * The pacer steps follow Meta's answer alone, whatever becomes of the message (a message out of
 * attempts still leaves its pause behind for the next sends of the number or recipient).
 */

/** Which sender asks: they differ only in how often they may look again at a send in doubt. */
export type Sender = 'direct' | 'drain';

export interface OutcomeContext {
  sender: Sender;
  /** The message's attempt that answered (its first POST is 1). */
  attempt: number;
  /** The sender's attempts per message; absent when something else counts them (Temporal, for `admit`). */
  maxAttempts?: number;
  /** `IN_DOUBT_GRACE_MS`: how long a lost answer waits for a status webhook before the ledger decides. */
  inDoubtGraceMs: number;
}

/** Why a message is tried again. */
export type RetryWhy =
  /** Meta refused it for now (a counted attempt; a direct send's message shows `sending` again). */
  | 'refused'
  /** The POST's answer was lost: a counted attempt; the message stays `in_doubt` (src/sending/ledger.ts). */
  | 'answer_lost'
  /** An earlier POST is in doubt: looks again for its status webhook. Not an attempt. */
  | 'in_doubt'
  /** Withdrawn before its POST (past the `admit` attempt's last POST, or the drain stopped). Not an attempt. */
  | 'not_sent';

/** What happens to the message. */
export type MessageStep =
  | { kind: 'sent'; wamid: string; attempts: number; sentAs?: 'fallback_template' }
  | { kind: 'failed'; reason: string; error?: MetaErrorInfo; attempts: number }
  /** `counted`: this attempt counts toward the message's attempts. `reason`, `error`: Meta's, when it answered. */
  | { kind: 'retry'; afterMs: number; why: RetryWhy; counted: boolean; reason?: string; error?: MetaErrorInfo }
  /** Kept (or put back) in the WABA's queue, for the drain once the gate or the token is back. */
  | { kind: 'stays_queued' };

/** The WABA's send gate: closed (lifecycle event `SEND_ACCOUNT_UNUSABLE`) because the account cannot send. */
export interface GateStep {
  close: true;
  detail: string;
  code: number;
  errorReason: string;
}

/** The Graph token Meta refused: paused for every WABA that uses it (src/lifecycle/credentials.ts). */
export interface TokenStep {
  pause: true;
  detail: string;
}

/** What the shared pacer (src/sending/pacing.ts) records, for every worker. */
export type PacerStep =
  /** Meta throttled the number (130429): none of its sends starts for `ms`. */
  | { kind: 'pause_number'; ms: number }
  /** Meta refused the recipient's pair limit (131056): nothing is sent to that recipient for `ms`. */
  | { kind: 'pause_recipient'; ms: number };

export interface SendDecision {
  message: MessageStep;
  gate?: GateStep;
  token?: TokenStep;
  pacer?: PacerStep;
}

/** The longest a drain waits before it looks again at a send in doubt. */
export const IN_DOUBT_RECHECK_MS = 5_000;
/** Wait before retrying a send withdrawn before its POST. */
export const NOT_SENT_RETRY_MS = 1_000;
/** Longest wait between retries of other retryable errors (unless Meta asks for longer). */
export const MAX_RETRY_BACKOFF_MS = 30_000;
/** The wait when a retryable error names none. */
const DEFAULT_RETRY_MS = 1_000;

/** What happens after a send attempt answered `answer`. Pure; see the table at the top of this file. */
export function decideSendOutcome(answer: LedgeredAttempt, ctx: OutcomeContext): SendDecision {
  const n = Math.max(1, Math.floor(ctx.attempt));
  const recheck = (ms: number): number => (ctx.sender === 'drain' ? Math.min(ms, IN_DOUBT_RECHECK_MS) : ms);
  switch (answer.kind) {
    case 'sent':
      return {
        message: { kind: 'sent', wamid: answer.wamid, attempts: n, ...(answer.sentAs && { sentAs: answer.sentAs }) },
      };
    case 'already_sent':
      return { message: { kind: 'sent', wamid: answer.wamid, attempts: n } };
    case 'failed':
      return {
        message: { kind: 'failed', reason: answer.error.reason, error: answer.error.toMetaErrorInfo(), attempts: n },
      };
    case 'window_closed':
      // Not POSTed: this attempt is not counted.
      return { message: { kind: 'failed', reason: REASONS.serviceWindowClosed, attempts: n - 1 } };
    case 'in_doubt_give_up':
      return { message: { kind: 'failed', reason: REASONS.inDoubt, attempts: n } };
    case 'unusable':
      return {
        message: { kind: 'stays_queued' },
        gate: { close: true, detail: answer.detail, code: answer.error.code, errorReason: answer.error.reason },
      };
    case 'credentials':
      return { message: { kind: 'stays_queued' }, token: { pause: true, detail: answer.detail } };
    case 'in_doubt_wait':
      return { message: { kind: 'retry', afterMs: Math.ceil(recheck(answer.ms)), why: 'in_doubt', counted: false } };
    case 'not_sent':
      return { message: { kind: 'retry', afterMs: NOT_SENT_RETRY_MS, why: 'not_sent', counted: false } };
    case 'retry':
      return decideRetry(answer.error, n, ctx, recheck);
  }
}

function decideRetry(
  err: GraphApiError,
  n: number,
  ctx: OutcomeContext,
  recheck: (ms: number) => number,
): SendDecision {
  const wait = err.retryAfterMs ?? DEFAULT_RETRY_MS;
  let pacer: PacerStep | undefined;
  let afterMs: number;
  if (err.pausesNumber) {
    pacer = { kind: 'pause_number', ms: wait };
    afterMs = wait;
  } else if (err.pacesRecipient) {
    pacer = { kind: 'pause_recipient', ms: pairLimitBackoffMs(n) };
    afterMs = pacer.ms;
  } else {
    afterMs = Math.max(wait, Math.min(MAX_RETRY_BACKOFF_MS, wait * 2 ** (n - 1)));
  }
  const error = err.toMetaErrorInfo();
  const message: MessageStep =
    ctx.maxAttempts !== undefined && n >= ctx.maxAttempts && !err.mayHaveBeenSent
      ? { kind: 'failed', reason: REASONS.retriesExhausted, error, attempts: n }
      : err.mayHaveBeenSent
        ? {
            kind: 'retry',
            afterMs: Math.ceil(Math.max(afterMs, recheck(ctx.inDoubtGraceMs))),
            why: 'answer_lost',
            counted: true,
            reason: err.reason,
            error,
          }
        : { kind: 'retry', afterMs: Math.ceil(afterMs), why: 'refused', counted: true, reason: err.reason, error };
  return pacer ? { message, pacer } : { message };
}
