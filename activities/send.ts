import { ApplicationFailure } from '@temporalio/activity';
import type { Config } from '../src/config';
import { THROUGHPUT_LIMIT_CODE } from '../src/adapters/graph/errors';
import { attemptSend, outcomeOfSettlement } from '../src/sending/attempt';
import type { GraphClient } from '../src/adapters/graph/client';
import type { Logger } from '../src/logger';
import { outcomeOf, readMessage, type Collections, type MessageDoc, type PhoneNumberDoc } from '../src/adapters/store/db';
import { findSettlement, recordSettlements, type Settlement } from '../src/adapters/store/queue';
import { queueMessage, recordMessage } from '../src/sending/admission';
import { gateOpen } from '../src/adapters/store/wabas';
import type { RateLimiters } from '../src/sending/pacing';
import { deliverLifecycleEvent, type LauncherDeps } from '../src/lifecycle/launch';
import { FAILURE_TYPES, REASONS, type SendOutcome, type SendRequest } from '../workflows/contracts';
import type { AdmitResult } from './types';

export interface SendDeps {
  c: Collections;
  graph: GraphClient;
  limiters: RateLimiters;
  launcher: LauncherDeps;
  config: Config;
  logger: Logger;
}

/** Looks a phone number up in the registry, with a short per-process cache (registrations rarely change). */
export function createPhoneNumberLookup(c: Collections, ttlMs = 5_000) {
  const cache = new Map<string, { doc: PhoneNumberDoc | null; until: number }>();
  return async (phoneNumberId: string): Promise<PhoneNumberDoc | null> => {
    const hit = cache.get(phoneNumberId);
    if (hit && hit.until > Date.now()) return hit.doc;
    const doc = await c.phoneNumbers.findOne({ _id: phoneNumberId });
    cache.set(phoneNumberId, { doc, until: Date.now() + ttlMs });
    return doc;
  };
}

/**
 * Send-path activities. `admit` is the heart: it decides, from the WABA's state read at that
 * moment, whether the message goes out now or joins the queue.
 */
export function createSendActivities(deps: SendDeps) {
  const { c, graph, limiters, config } = deps;
  const phoneNumber = createPhoneNumberLookup(c);

  async function settle(s: Settlement): Promise<SendOutcome> {
    await recordSettlements(c, [s]);
    return outcomeOfSettlement(s);
  }

  const queue = (req: SendRequest, wabaId: string, doc: MessageDoc): Promise<SendOutcome> =>
    queueMessage(deps, req, wabaId, doc.content, doc.status === 'queued');

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
      const now = new Date().toISOString();
      const number = await phoneNumber(req.phoneNumberId);
      if (!number) {
        throw ApplicationFailure.create({
          type: FAILURE_TYPES.unknownPhoneNumber,
          message: `phone number ${req.phoneNumberId} is not registered`,
          nonRetryable: true,
        });
      }
      const wabaId = number.wabaId;
      const log = deps.logger.child({ wabaId, messageId: req.messageId });

      // A new message (the typed client's first attempt) costs one insert; a known one (the API
      // recorded it, or this is a retry) is read with its settlement.
      let doc = await recordMessage(c, req, wabaId);
      if (!doc) {
        const known = await readMessage(c, req.messageId);
        if (known?.settlement) return outcomeOf(req.messageId, known);
        if (!known?.doc) throw new Error(`message ${req.messageId} vanished`); // retried by Temporal
        doc = known.doc;
        if (doc.status === 'queued') {
          // Queued (by the API, or an earlier attempt): still waiting, or settled since we looked.
          if (await c.queue.findOne({ messageId: req.messageId }, { projection: { _id: 1 } })) {
            return { messageId: req.messageId, status: 'queued', at: doc.queuedAt ?? now };
          }
          const settlement = await findSettlement(c, req.messageId);
          if (settlement) return outcomeOf(req.messageId, { doc, settlement });
          // Marked queued but never inserted (an interrupted attempt): queue it again below.
        }
      }

      if (req.expiresAt && Date.parse(req.expiresAt) <= Date.now()) {
        return settle({ messageId: req.messageId, status: 'expired', reason: REASONS.expired, at: now });
      }

      const waba = await c.wabas.findOne({ _id: wabaId }, { projection: { state: 1 } });
      if (waba?.state === 'partner_removed') {
        return settle({ messageId: req.messageId, status: 'failed', reason: REASONS.partnerRemoved, at: now });
      }
      if (waba?.state === 'reconnect_abandoned' && config.lifecycle.onAbandon === 'fail') {
        return settle({ messageId: req.messageId, status: 'failed', reason: REASONS.reconnectTimeout, at: now });
      }
      if (!gateOpen(waba?.state)) return queue(req, wabaId, doc);
      if (doc.status === 'queued') return queue(req, wabaId, doc); // re-queue an interrupted attempt

      const limiter = limiters.for(req.phoneNumberId, number.mps);
      await limiter.take();
      const { phoneNumberId, to } = req;
      const attempt = await attemptSend(graph, { wabaId, phoneNumberId, to, content: doc.content });
      const at = new Date().toISOString();
      switch (attempt.kind) {
        case 'sent':
          return settle({
            messageId: req.messageId,
            status: 'sent',
            wamid: attempt.wamid,
            at,
            attempts: doc.attempts + 1,
          });
        case 'failed':
          log.info({ code: attempt.error.code, reason: attempt.error.reason }, 'send failed permanently');
          return settle({
            messageId: req.messageId,
            status: 'failed',
            reason: attempt.error.reason,
            error: attempt.error.toMetaErrorInfo(),
            at,
          });
        case 'unusable':
          log.warn({ detail: attempt.detail }, 'account unusable: queueing and closing the gate');
          await deliverLifecycleEvent(deps.launcher, {
            key: `unusable:${req.messageId}:${at}`,
            type: 'SEND_ACCOUNT_UNUSABLE',
            wabaId,
            receivedAt: at,
            source: 'send',
            detail: attempt.detail,
          });
          return queue(req, wabaId, doc);
        case 'retry': {
          const err = attempt.error;
          if (err.code === THROUGHPUT_LIMIT_CODE) limiter.pause(err.retryAfterMs ?? 1_000);
          await c.messages.updateOne(
            { _id: req.messageId },
            { $set: { status: 'sending', updatedAt: at }, $inc: { attempts: 1 } },
          );
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
      return settle(outcome);
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
