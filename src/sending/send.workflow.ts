import {
  ActivityFailure,
  type ActivityOptions,
  ApplicationFailure,
  condition,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import {
  FAILURE_TYPES,
  REASONS,
  messageSettledSignal,
  messageStatusQuery,
  type SendOptions,
  type SendOutcome,
  type SendRequest,
} from '../contracts';

const TERMINAL = new Set<SendOutcome['status']>(['sent', 'failed', 'expired', 'cancelled']);
/** `admit` attempts once the message is in doubt and its attempts ran out (see `inDoubtRound`). */
const IN_DOUBT_ROUND_ATTEMPTS = 4;

/** `admit`'s activity options: Temporal retries it with backoff (Meta's wait, when it names one, wins). */
function admitOptions(maximumAttempts: number): ActivityOptions {
  return {
    startToCloseTimeout: '1 minute',
    retry: {
      initialInterval: '1 second',
      maximumInterval: '1 minute',
      backoffCoefficient: 2,
      maximumAttempts,
      nonRetryableErrorTypes: [FAILURE_TYPES.unknownPhoneNumber],
    },
  };
}

/**
 * One run per accepted message (id `send/<messageId>`). When the WABA's send gate is open the
 * message is sent at once (retryable Meta errors are retried with backoff by Temporal; permanent
 * ones fail the message with Meta's code and text). When the gate is closed, or the send proves
 * the account unusable, the message joins the WABA's durable queue and this workflow waits for
 * the drain to settle it. The result is the message's final outcome, also shown by
 * `GET /v1/messages/:id`.
 */
export async function sendMessageWorkflow(req: SendRequest, options: SendOptions = {}): Promise<SendOutcome> {
  const acts = proxyActivities<Activities>(admitOptions(options.maxAttempts ?? 8));
  /**
   * The attempts after the last one lost its answer (or still waited for a lost answer's status):
   * the message may have gone out, so running out of attempts there is no reason to fail it. As in
   * the drain, the ledger decides in these (src/sending/ledger.ts): a status webhook settles it as
   * sent; after the grace period `IN_DOUBT_POLICY` resends it once or fails it `in_doubt`. Four
   * attempts hold that: the wait, the resend, and the wait and give-up of a resend whose answer
   * was lost too. Only this path ever schedules them (no history otherwise).
   */
  const inDoubtRound = proxyActivities<Activities>(admitOptions(IN_DOUBT_ROUND_ATTEMPTS));
  const admitOrLetLedgerDecide = async (request: SendRequest) => {
    try {
      return await acts.admit(request);
    } catch (err) {
      const type = err instanceof ActivityFailure && err.cause instanceof ApplicationFailure ? err.cause.type : '';
      if (type !== FAILURE_TYPES.answerLost && type !== FAILURE_TYPES.inDoubt) throw err;
      return await inDoubtRound.admit(request);
    }
  };
  const poller = proxyActivities<Activities>({ startToCloseTimeout: '30 seconds' });
  // One point read: a local activity (one history marker).
  const reader = proxyLocalActivities<Activities>({ startToCloseTimeout: '30 seconds' });

  let current: SendOutcome = { messageId: req.messageId, status: 'accepted', at: req.acceptedAt };
  setHandler(messageStatusQuery, () => current);
  setHandler(messageSettledSignal, (outcome) => {
    if (outcome.messageId === req.messageId && TERMINAL.has(outcome.status)) current = outcome;
  });
  /** An answer that arrived while a settle signal was on its way never takes the signal's place. */
  const unlessSettled = (outcome: SendOutcome): void => {
    if (!TERMINAL.has(current.status)) current = outcome;
  };

  try {
    // Queued by the API (at its acceptance): only a settlement can have come since.
    unlessSettled(
      await (options.queued ? reader.getMessageOutcome(req.messageId, req.acceptedAt) : admitOrLetLedgerDecide(req)),
    );
  } catch (err) {
    if (!(err instanceof ActivityFailure)) throw err;
    const cause = err.cause instanceof ApplicationFailure ? err.cause : undefined;
    // Retries exhausted (or a non-retryable admission error): the message fails with the reason
    // (`in_doubt` when its last POST may have gone out, see `settleDirect`).
    unlessSettled(
      await poller.settleDirect({
        messageId: req.messageId,
        status: 'failed',
        reason: cause?.type === FAILURE_TYPES.unknownPhoneNumber ? 'unknown_phone_number' : REASONS.retriesExhausted,
        error: cause?.details?.[0] as SendOutcome['error'],
        at: new Date().toISOString(),
      }),
    );
  }

  // Queued: whoever settles the message (the drain, a failed queue) signals before it writes the
  // outcome and retries until Temporal accepts (src/sending/drain.activities.ts), so the wait needs no timer:
  // no history at all while the message waits, however long.
  await condition(() => TERMINAL.has(current.status));
  return current;
}
