import { ApplicationFailure } from '@temporalio/activity';
import type { GraphClient } from '../src/adapters/graph/client';
import { markRetrying, outcomeOf, readMessage } from '../src/adapters/store/messages';
import type { Collections } from '../src/adapters/store/db';
import type { Logger } from '../src/logger';
import { deliverLifecycleEvent, type LaunchDeps } from '../src/lifecycle/launch';
import { UnknownPhoneNumberError, type AdmissionService } from '../src/sending/admission';
import { attemptSend } from '../src/sending/attempt';
import type { RateLimiters } from '../src/sending/pacing';
import { outcomeOfSettlement, type Settlement } from '../src/adapters/store/queue';
import { FAILURE_TYPES, type SendOutcome, type SendRequest } from '../workflows/contracts';
import type { AdmitResult } from './types';

export interface SendDeps {
  c: Collections;
  graph: GraphClient;
  limiters: RateLimiters;
  launch: LaunchDeps;
  admission: AdmissionService;
  logger: Logger;
  /** Names the token's source in alerts (never the token). */
  config?: { graph: { tokensByWaba: Record<string, string> } };
}

/**
 * Send-path activities. `admit` asks the admission (src/sending/admission.ts) whether the message
 * goes out now, then makes the attempt and acts on what it meant (src/sending/attempt.ts).
 */
/** Where the token for a WABA comes from, for operators (never the token itself). */
function tokenSource(config: SendDeps['config'], wabaId: string): string {
  return config && wabaId in config.graph.tokensByWaba ? `GRAPH_API_TOKENS_BY_WABA[${wabaId}]` : 'GRAPH_API_TOKEN';
}

export function createSendActivities(deps: SendDeps) {
  const { c, graph, limiters, admission } = deps;

  return {
    /**
     * Admits one message: records it (idempotent), then sends it now when the WABA's gate is open,
     * or queues it. Retryable Meta errors are thrown as retryable failures (Temporal retries this
     * activity, re-reading the gate each time); permanent ones fail the message; "account
     * unusable" queues it and closes the gate through the lifecycle workflow. Safe to retry: a
     * message already settled or queued is not sent or queued again (except the Cloud API's own
     * ambiguity: a send whose answer was lost may have gone out).
     */
    async admit(req: SendRequest): Promise<AdmitResult> {
      let decided;
      try {
        decided = await admission.admitMessage(req);
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

      const limiter = limiters.for(req.phoneNumberId, decided.mps);
      await limiter.take();
      const { phoneNumberId, to } = req;
      const attemptedAt = Date.now();
      const attempt = await attemptSend(graph, { wabaId, phoneNumberId, to, content: doc.content });
      const at = new Date().toISOString();
      switch (attempt.kind) {
        case 'sent':
          return admission.settle({
            messageId: req.messageId,
            status: 'sent',
            wamid: attempt.wamid,
            at,
            attempts: doc.attempts + 1,
          });
        case 'failed':
          log.info({ code: attempt.error.code, reason: attempt.error.reason }, 'send failed permanently');
          return admission.settle({
            messageId: req.messageId,
            status: 'failed',
            reason: attempt.error.reason,
            error: attempt.error.toMetaErrorInfo(),
            at,
          });
        case 'unusable':
          log.warn({ detail: attempt.detail }, 'account unusable: queueing and closing the gate');
          await deliverLifecycleEvent(deps.launch, {
            key: `unusable:${req.messageId}:${at}`,
            type: 'SEND_ACCOUNT_UNUSABLE',
            wabaId,
            receivedAt: at,
            source: 'send',
            causeTime: attemptedAt,
            code: attempt.error.code,
            errorReason: attempt.error.reason,
            messageId: req.messageId,
            detail:
              attempt.error.reason === 'auth_failed'
                ? `${attempt.detail}; token from ${tokenSource(deps.config, wabaId)}`
                : attempt.detail,
          });
          return admission.requeue(req, wabaId, doc);
        case 'retry': {
          const err = attempt.error;
          if (err.pausesNumber) limiter.pause(err.retryAfterMs ?? 1_000);
          await markRetrying(c, req.messageId, at);
          log.info({ code: err.code, reason: err.reason }, 'send failed; will retry');
          // Temporal retries `admit`, which reads the gate again before the next attempt.
          throw ApplicationFailure.create({
            type: FAILURE_TYPES.metaRetryable,
            message: `${err.reason}: ${err.message}`,
            details: [err.toMetaErrorInfo()],
            nextRetryDelay: err.retryAfterMs,
          });
        }
      }
    },

    /** Records the final outcome of a message the send workflow gave up on (not queued). */
    async settleDirect(outcome: Omit<Settlement, 'queueId'>): Promise<SendOutcome> {
      const known = await readMessage(c, outcome.messageId);
      if (known?.settlement || known?.doc?.status === 'queued') return outcomeOf(outcome.messageId, known);
      if (!known) return outcomeOfSettlement(outcome); // never recorded (unknown number): nothing to store
      return admission.settle(outcome);
    },

    /** The message's outcome as recorded (the queued send workflow's safety-net poll). */
    async getMessageOutcome(messageId: string): Promise<SendOutcome> {
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
