import type { Collections } from '../adapters/store/db';
import { readAttempt } from './attempts.store';
import { markRequeued, readMessage, recordLateFailure, recordQueueEntry, sendKey } from './messages.store';
import { enqueueFront, findSettlement } from './queue.store';
import { emitServiceEvents } from '../relay/events';
import type { ForwardTarget } from '../relay/targets';
import type { LateFailureInput, LateFailureResult } from '../contracts';

/**
 * Late failures: Meta accepted a send (200, wamid) and later failed it with a status saying the
 * account cannot send (the number was offboarded while the message was on its way). Such a message
 * is queued again, once, at the front of its WABA's queue (in acceptance order among such
 * messages: everything else waiting was accepted after it), and drained like the rest when the gate
 * is open. Its history (`sent` → `failed` by Meta → `queued` → its second outcome) is on
 * `GET /v1/messages/:id`.
 *
 * Called by the WABA's lifecycle workflow (its `requeueLateFailure` local activity) for each such
 * status, in the workflow's event order: the gate decision for the same status comes first.
 * Safe to retry: `late_failures` is insert-only (`_id` = message id, the first failure wins), and
 * the second send has its own ledger entry (`sendKey(id, 2)`), so a queue entry inserted twice is
 * still POSTed once.
 */
export async function requeueLateFailure(
  c: Collections,
  input: LateFailureInput,
  targets: readonly ForwardTarget[],
): Promise<LateFailureResult> {
  // The status names the send by its key (`biz_opaque_callback_data`); the ledger says which message and round.
  const ledger = await readAttempt(c, input.sendKey);
  const messageId = ledger?.messageId ?? input.sendKey;
  if ((ledger?.round ?? 1) > 1) return { requeued: false, why: 'the message was already sent again once' };
  const known = await readMessage(c, messageId);
  if (!known?.doc) return { requeued: false, why: 'unknown message' };
  if (known.doc.wabaId !== input.wabaId) return { requeued: false, why: 'the message belongs to another WABA' };
  const first = known.settlement;
  if (!first || first.status !== 'sent' || first.wamid !== input.wamid) {
    return { requeued: false, why: 'the message was not settled as sent with this wamid' };
  }
  const now = new Date().toISOString();
  // The "once": a retry (or a redelivered status) finds the first record and goes on from there.
  if (!known.resend) {
    await recordLateFailure(c, {
      _id: messageId,
      wabaId: input.wabaId,
      wamid: input.wamid,
      code: input.code,
      failedAt: new Date(input.failedAt).toISOString(),
      requeuedAt: now,
      storedAt: new Date(),
    });
  }
  // A retry after the second send ended (or began) must not queue it again.
  const [second, secondLedger] = await Promise.all([
    findSettlement(c, messageId, 2),
    readAttempt(c, sendKey(messageId, 2)),
  ]);
  if (second || secondLedger) return { requeued: false, why: 'the message was already queued again' };
  await emitServiceEvents(c, targets, [
    {
      id: `${messageId}:requeued`,
      type: 'message.requeued',
      at: now,
      wabaId: input.wabaId,
      data: { messageId, wamid: input.wamid, code: input.code },
    },
  ]);
  // Status first, entry second (as a first queueing): a retry finds round 2 and an entry, or inserts it.
  await markRequeued(c, messageId, now);
  const { doc } = known;
  const entry = await enqueueFront(c, {
    wabaId: doc.wabaId,
    messageId,
    phoneNumberId: doc.phoneNumberId,
    to: doc.to,
    content: doc.content,
    ...(doc.fallbackTemplate ? { fallbackTemplate: doc.fallbackTemplate } : {}),
    ...(doc.expiresAt ? { expiresAt: doc.expiresAt } : {}),
    enqueuedAt: now,
    notify: false, // its send workflow ended with the first outcome
    round: 2,
    acceptedAt: doc.acceptedAt,
  });
  await recordQueueEntry(c, messageId, entry.id);
  return { requeued: true };
}
