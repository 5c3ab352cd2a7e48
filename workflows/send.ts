import {
  ActivityFailure,
  ApplicationFailure,
  condition,
  continueAsNew,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import {
  FAILURE_TYPES,
  REASONS,
  messageSettledSignal,
  messageStatusQuery,
  type SendOutcome,
  type SendRequest,
} from './contracts';

/** Options a sender may set; defaults suit production. */
export interface SendOptions {
  /** How often a queued message's outcome is read from the database when no settle signal came. */
  queuedPollMs?: number;
  /** Attempts for retryable Meta errors (throttling, 5xx, network) before the message fails. */
  maxAttempts?: number;
}

const TERMINAL = new Set<SendOutcome['status']>(['sent', 'failed', 'expired', 'cancelled']);

/**
 * One run per accepted message (id `send/<messageId>`). When the WABA's send gate is open the
 * message is sent at once (retryable Meta errors are retried with backoff by Temporal; permanent
 * ones fail the message with Meta's code and text). When the gate is closed, or the send proves
 * the account unusable, the message joins the WABA's durable queue and this workflow waits for
 * the drain to settle it. The result is the message's final outcome, also shown by
 * `GET /v1/messages/:id`.
 */
export async function sendMessageWorkflow(req: SendRequest, options: SendOptions = {}): Promise<SendOutcome> {
  const acts = proxyActivities<Activities>({
    startToCloseTimeout: '1 minute',
    retry: {
      initialInterval: '1 second',
      maximumInterval: '1 minute',
      backoffCoefficient: 2,
      maximumAttempts: options.maxAttempts ?? 8,
      nonRetryableErrorTypes: [FAILURE_TYPES.unknownPhoneNumber],
    },
  });
  const poller = proxyActivities<Activities>({ startToCloseTimeout: '30 seconds' });

  let current: SendOutcome = { messageId: req.messageId, status: 'accepted', at: req.acceptedAt };
  setHandler(messageStatusQuery, () => current);
  setHandler(messageSettledSignal, (outcome) => {
    if (outcome.messageId === req.messageId && TERMINAL.has(outcome.status)) current = outcome;
  });

  try {
    current = await acts.admit(req);
  } catch (err) {
    if (!(err instanceof ActivityFailure)) throw err;
    const cause = err.cause instanceof ApplicationFailure ? err.cause : undefined;
    // Retries exhausted (or a non-retryable admission error): the message fails with the reason.
    current = await poller.settleDirect({
      messageId: req.messageId,
      status: 'failed',
      reason: cause?.type === FAILURE_TYPES.unknownPhoneNumber ? 'unknown_phone_number' : REASONS.retriesExhausted,
      error: cause?.details?.[0] as SendOutcome['error'],
      at: new Date().toISOString(),
    });
  }

  const pollMs = options.queuedPollMs ?? 10 * 60_000;
  while (!TERMINAL.has(current.status)) {
    // The drain signals the outcome; the poll is the safety net if a signal was lost.
    if (await condition(() => TERMINAL.has(current.status), pollMs)) break;
    const stored = await poller.getMessageOutcome(req.messageId);
    if (TERMINAL.has(stored.status)) current = stored;
    else if (workflowInfo().continueAsNewSuggested) {
      // Waits of weeks (ON_ABANDON=keep) stay within history limits. The next run's admit is
      // idempotent: it finds the message queued (or settled) and waits again.
      return continueAsNew<typeof sendMessageWorkflow>(req, options);
    }
  }
  return current;
}
