import { ApplicationFailure, Context } from '@temporalio/activity';
import type { GraphClient } from '../adapters/graph/client';
import { readAttempt, readConfirmation } from './attempts.store';
import { markRetrying, outcomeOf, readMessage, sendKey } from './messages.store';
import type { Collections } from '../adapters/store/db';
import type { Logger } from '../logger';
import { deliverLifecycleEvent } from '../lifecycle/launch';
import type { LaunchDeps } from '../launch-deps';
import { UnknownPhoneNumberError, type AdmissionService } from './admission';
import { sendWithLedger } from './ledger';
import { pauseForRefusedToken } from '../lifecycle/credentials';
import type { Config } from '../config';
import { realClock, type SharedPacer } from './pacing';
import { findSettlement, outcomeOfSettlement, type Settlement } from './queue.store';
import { FAILURE_TYPES, REASONS, type SendOutcome, type SendRequest } from '../contracts';
import { decideSendOutcome, type MessageStep } from './outcome';
import type { AdmitResult } from '../contracts';

/** Longest wait for a send slot inside one `admit` attempt (its start-to-close timeout is 1 minute). */
export const ADMIT_MAX_WAIT_MS = 30_000;

/** What an `admit` attempt keeps back from its timeout besides the POST's own timeout (clock skew with the server). */
export const ADMIT_DEADLINE_MARGIN_MS = 5_000;

/**
 * The last moment (epoch ms, this worker's clock) at which the current `admit` attempt may POST:
 * its POST and the answer's record then end before Temporal times the attempt out, so before the
 * next attempt can start (an overrun attempt never POSTs beside its successor). Counted from the
 * earlier of the attempt's scheduling (the server's clock) and its start here.
 */
function lastPostAt(startedHere: number, graphTimeoutMs: number): number {
  const info = Context.current().info;
  const start = Math.min(info.currentAttemptScheduledTimestampMs, startedHere);
  return start + info.startToCloseTimeoutMs - graphTimeoutMs - ADMIT_DEADLINE_MARGIN_MS;
}

/** The failure that has Temporal retry `admit` after the decided wait (a refused attempt is first counted). */
function retryFailure(step: Extract<MessageStep, { kind: 'retry' }>, log: Logger): ApplicationFailure {
  const nextRetryDelay = step.afterMs;
  switch (step.why) {
    case 'in_doubt':
      // The previous attempt's answer was lost: a status webhook may still confirm it.
      return ApplicationFailure.create({
        type: FAILURE_TYPES.inDoubt,
        message: 'the previous attempt may have been sent; waiting for its status',
        nextRetryDelay,
      });
    case 'not_sent':
      log.warn('the attempt ran past its last POST; the next attempt sends');
      return ApplicationFailure.create({
        type: FAILURE_TYPES.paced,
        message: 'the send would have left too close to the attempt timeout',
        nextRetryDelay,
      });
    case 'refused':
    case 'answer_lost':
      log.info({ code: step.error?.code, reason: step.reason, retryInMs: nextRetryDelay }, 'send failed; will retry');
      return ApplicationFailure.create({
        type: step.why === 'answer_lost' ? FAILURE_TYPES.answerLost : FAILURE_TYPES.metaRetryable,
        message: `${step.reason}: ${step.error?.message}`,
        details: [step.error],
        nextRetryDelay,
      });
  }
}

export interface SendDeps {
  c: Collections;
  graph: GraphClient;
  pacer: SharedPacer;
  launch: LaunchDeps;
  admission: AdmissionService;
  /** Sending settings, and the Graph tokens' sources (a refused token pauses its source). */
  config: Config;
  logger: Logger;
}

/**
 * Send-path activities. `admit` asks the admission (src/sending/admission.ts) whether the message
 * goes out now, then makes the attempt (src/sending/ledger.ts) and carries out what the send-outcome
 * policy (src/sending/outcome.ts, shared with the drain) decides its answer means.
 */
export function createSendActivities(deps: SendDeps) {
  const { c, graph, pacer, admission } = deps;

  return {
    /**
     * Admits one message: records it (idempotent), then sends it now when the WABA's gate is open,
     * or queues it. Retryable Meta errors are thrown as retryable failures (Temporal retries this
     * activity, re-reading the gate each time; the run's first attempt acts on the API's fresh
     * "open" verdict, `reusesApiVerdict`); permanent ones fail the message; "account
     * unusable" queues it and closes the gate through the lifecycle workflow. Safe to retry: a
     * message already settled or queued is not sent or queued again (except the Cloud API's own
     * ambiguity: a send whose answer was lost may have gone out).
     */
    async admit(req: SendRequest): Promise<AdmitResult> {
      const postBy = lastPostAt(Date.now(), deps.config.graph.timeoutMs);
      let decided;
      try {
        const { attempt, currentAttemptScheduledTimestampMs: scheduledAt } = Context.current().info;
        decided = await admission.admitMessage(req, { attempt, scheduledAt });
      } catch (err) {
        if (!(err instanceof UnknownPhoneNumberError)) throw err;
        throw ApplicationFailure.create({
          type: FAILURE_TYPES.unknownPhoneNumber,
          message: err.message,
          nonRetryable: true,
        });
      }
      if (decided.kind === 'done') return decided.outcome;
      const { wabaId, doc } = decided;
      const log = deps.logger.child({ wabaId, messageId: req.messageId });

      const { phoneNumberId, to } = req;
      // The slot is shared by every worker (src/sending/pacing.ts). This activity does not
      // heartbeat and has one minute: a slot further away than ADMIT_MAX_WAIT_MS (or than the
      // attempt's last POST) is not claimed, and Temporal retries the attempt when the number (or
      // recipient) has room again.
      const maxWaitMs = Math.max(0, Math.min(ADMIT_MAX_WAIT_MS, postBy - realClock.now()));
      const slot = await pacer.reserve({ phoneNumberId, mps: decided.mps, to, maxWaitMs });
      if (slot.kind === 'later') {
        log.info({ retryAfterMs: Math.round(slot.retryAfterMs) }, 'no send slot within the wait; retrying later');
        throw ApplicationFailure.create({
          type: FAILURE_TYPES.paced,
          message: `no send slot within ${Math.round(maxWaitMs)} ms`,
          nextRetryDelay: Math.ceil(slot.retryAfterMs),
        });
      }
      // The ledger records the POST just before its slot, so a crash while waiting leaves nothing in doubt.
      await pacer.prepare(slot.reservation);
      const attemptedAt = Date.now();
      const attempt = await sendWithLedger(
        c,
        graph,
        {
          wabaId,
          messageId: req.messageId,
          phoneNumberId,
          to,
          content: doc.content,
          fallbackTemplate: doc.fallbackTemplate,
        },
        {
          policy: deps.config.sending.inDoubt,
          logger: log,
          // Past the attempt's last POST the send is withdrawn: the next attempt makes it.
          depart: async () => (await pacer.depart(slot.reservation)) && Date.now() <= postBy,
          targets: deps.config.forward.targets,
          // A sent or failed answer is settled below at once: the settlement is its record.
          answerSettled: true,
        },
      );
      slot.reservation.done(); // used, or not needed (already sent, in doubt)
      const at = new Date().toISOString();
      const decision = decideSendOutcome(attempt, {
        sender: 'direct',
        // Counts the earlier refused attempts (`markRetrying`); Temporal's retry policy caps them.
        attempt: doc.attempts + 1,
        inDoubtGraceMs: deps.config.sending.inDoubt.graceMs,
      });
      if (decision.pacer?.kind === 'pause_number') await pacer.pause(phoneNumberId, decision.pacer.ms);
      else if (decision.pacer?.kind === 'pause_recipient') await pacer.penalize(phoneNumberId, to, decision.pacer.ms);
      if (decision.gate) {
        log.warn({ detail: decision.gate.detail }, 'account unusable: queueing and closing the gate');
        await deliverLifecycleEvent(deps.launch, {
          key: `unusable:${req.messageId}:${at}`,
          type: 'SEND_ACCOUNT_UNUSABLE',
          wabaId,
          receivedAt: at,
          source: 'send',
          causeTime: attemptedAt,
          code: decision.gate.code,
          errorReason: decision.gate.errorReason,
          messageId: req.messageId,
          detail: decision.gate.detail,
        });
      }
      if (decision.token) {
        // Not this WABA's state: every WABA using the token waits (src/lifecycle/credentials.ts).
        log.warn({ detail: decision.token.detail }, 'Meta refused the token: queueing and pausing the token');
        await pauseForRefusedToken(
          { c, launch: deps.launch, graph: deps.config.graph, logger: log },
          { wabaId, phoneNumberId, detail: decision.token.detail },
        );
      }
      const { message } = decision;
      switch (message.kind) {
        case 'sent':
          return admission.settle(
            {
              messageId: req.messageId,
              status: 'sent',
              wamid: message.wamid,
              at,
              attempts: message.attempts,
              ...(message.sentAs && { sentAs: message.sentAs }),
            },
            wabaId,
          );
        case 'failed':
          log.info({ code: message.error?.code, reason: message.reason }, 'send failed');
          return admission.settle(
            {
              messageId: req.messageId,
              status: 'failed',
              reason: message.reason,
              ...(message.error && { error: message.error }),
              at,
              attempts: message.attempts,
            },
            wabaId,
          );
        case 'stays_queued':
          return admission.requeue(req, wabaId, doc);
        case 'retry':
          // A refused attempt is counted and shown (`sending`); a lost answer stays `in_doubt`.
          if (message.why === 'refused') await markRetrying(c, req.messageId, at);
          // Temporal retries `admit`, which reads the gate again before the next attempt.
          throw retryFailure(message, log);
      }
    },

    /**
     * Records the final outcome of a message the send workflow gave up on (not queued). A send Meta
     * accepted (its answer, or a status webhook, in the ledger) is settled as sent, whatever the
     * workflow says; one whose last POST never got its answer recorded may have gone out, and fails
     * `in_doubt`, never `retries_exhausted` (which tells the sender it did not go).
     */
    async settleDirect(outcome: Omit<Settlement, 'queueId'>): Promise<SendOutcome> {
      const known = await readMessage(c, outcome.messageId);
      if (known?.settlement || known?.doc?.status === 'queued') return outcomeOf(outcome.messageId, known);
      if (!known?.doc) return outcomeOfSettlement(outcome); // never recorded (unknown number): nothing to store
      const key = sendKey(outcome.messageId, known.doc.round);
      const [attempt, confirmed] = await Promise.all([readAttempt(c, key), readConfirmation(c, key)]);
      const wamid = attempt?.wamid ?? confirmed?.wamid;
      if (wamid) {
        const { messageId, at } = outcome;
        return admission.settle(
          { messageId, status: 'sent', wamid, at, attempts: known.doc.attempts + 1 },
          known.doc.wabaId,
        );
      }
      const inDoubt = attempt?.state === 'in_flight' && outcome.status === 'failed';
      return admission.settle(inDoubt ? { ...outcome, reason: REASONS.inDoubt } : outcome, known.doc.wabaId);
    },

    /**
     * The message's outcome as recorded, read once by a run started on a message the API queued
     * (whoever settled it before the run existed found no run to signal). With `queuedAt` (the API
     * queued it then, just before starting the run) only its settlement can have changed that: one
     * read, not the message's two.
     */
    async getMessageOutcome(messageId: string, queuedAt?: string): Promise<SendOutcome> {
      if (queuedAt !== undefined) {
        const settlement = await findSettlement(c, messageId);
        return settlement
          ? outcomeOf(messageId, { doc: null, settlement })
          : { messageId, status: 'queued', at: queuedAt };
      }
      const known = await readMessage(c, messageId);
      if (!known) {
        throw ApplicationFailure.create({
          type: FAILURE_TYPES.unknownMessage,
          message: `no message ${messageId}`,
          nonRetryable: true,
        });
      }
      return outcomeOf(messageId, known);
    },
  };
}
