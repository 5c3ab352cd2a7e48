import type { SendOutcome } from '../contracts';
import {
  insertOnce,
  type Collections,
  type IdempotencyDoc,
  type LateFailureDoc,
  type MessageDoc,
  type SettlementDoc,
} from '../adapters/store/db';

/**
 * `messages` (one per accepted message; its final outcome is a `settlements` document, see
 * queue.ts) and `idempotency` (senders' Idempotency-Keys).
 */

/**
 * The key of one send of a message: its ledger entry, its `biz_opaque_callback_data` and its
 * settlement. The message id for the first send; `<id>#2` for the send after Meta failed the first
 * one late (src/sending/late-failure.ts). The ledger entry records the message id and round, so a
 * key is never parsed.
 */
export const sendKey = (messageId: string, round = 1): string => (round <= 1 ? messageId : `${messageId}#${round}`);

/** Inserts a message unless it is already recorded; true when this call inserted it. */
export function insertMessage(c: Collections, doc: MessageDoc): Promise<boolean> {
  return insertOnce(c.messages, { ...doc, storedAt: new Date() });
}

/** The message's acceptance time, when it is recorded. */
export async function acceptedAtOf(c: Collections, messageId: string): Promise<string | undefined> {
  return (await c.messages.findOne({ _id: messageId }, { projection: { acceptedAt: 1 } }))?.acceptedAt;
}

/** Marks a message `queued` (before its queue entry is inserted; see admission.ts). */
export async function markQueued(c: Collections, messageId: string, at: string): Promise<void> {
  await c.messages.updateOne({ _id: messageId }, { $set: { status: 'queued', queuedAt: at, updatedAt: at } });
}

/** Records where a queued message's entry is (`isQueued` then reads it by `_id`). */
export async function recordQueueEntry(c: Collections, messageId: string, entryId: string): Promise<void> {
  await c.messages.updateOne({ _id: messageId }, { $set: { queueEntryId: entryId } });
}

/** Marks a message `sending` after a failed attempt that will be retried, counting the attempt. */
export async function markRetrying(c: Collections, messageId: string, at: string): Promise<void> {
  await c.messages.updateOne({ _id: messageId }, { $set: { status: 'sending', updatedAt: at }, $inc: { attempts: 1 } });
}

/** Marks a message `in_doubt`: a send's answer was lost (see src/sending/ledger.ts). */
export async function markInDoubt(c: Collections, messageId: string, at: string): Promise<void> {
  await c.messages.updateOne({ _id: messageId }, { $set: { status: 'in_doubt', updatedAt: at } });
}

/**
 * Claims an Idempotency-Key for `messageId` (insert-only, atomic on a unique `_id`). Returns the
 * first claim when the key was already used: the caller compares its `requestHash`.
 */
export async function claimIdempotencyKey(c: Collections, doc: IdempotencyDoc): Promise<IdempotencyDoc | undefined> {
  if (await insertOnce(c.idempotency, { ...doc, storedAt: new Date() })) return undefined;
  const first = await c.idempotency.findOne({ _id: doc._id });
  if (!first) throw new Error(`Idempotency-Key ${doc._id} was taken and is gone`); // retried by the caller's 5xx
  return first;
}

/** Records Meta's late failure of a message (insert-only: the first one wins). */
export async function recordLateFailure(c: Collections, doc: LateFailureDoc): Promise<void> {
  await insertOnce(c.lateFailures, doc);
}

/** Marks a message queued again for its second send (before its queue entry is inserted). */
export async function markRequeued(c: Collections, messageId: string, at: string): Promise<void> {
  await c.messages.updateOne({ _id: messageId }, { $set: { status: 'queued', round: 2, queuedAt: at, updatedAt: at } });
}

/** A message as recorded: its document and, once it has one, its settlement. */
export interface StoredMessage {
  doc: MessageDoc | null;
  /** The first send's settlement. */
  settlement: SettlementDoc | null;
  /** Set once Meta failed the first send late and the message was queued again. */
  resend?: { failure: LateFailureDoc | null; settlement: SettlementDoc | null };
}

/**
 * Reads a message and its settlement (two reads by `_id`, in parallel), and for a message queued
 * again after a late failure its failure and second settlement (two more); undefined if unknown.
 */
export async function readMessage(c: Collections, messageId: string): Promise<StoredMessage | undefined> {
  const [doc, settlement] = await Promise.all([
    c.messages.findOne({ _id: messageId }),
    c.settlements.findOne({ _id: messageId }),
  ]);
  if (!doc && !settlement) return undefined;
  if (!doc?.round || doc.round < 2) return { doc, settlement };
  const [failure, second] = await Promise.all([
    c.lateFailures.findOne({ _id: messageId }),
    c.settlements.findOne({ _id: sendKey(messageId, doc.round) }),
  ]);
  return { doc, settlement, resend: { failure, settlement: second } };
}

/**
 * The outcome a stored message shows: its (latest) settlement when settled, else its current
 * status. A message queued again after a late failure shows its second send.
 */
export function outcomeOf(messageId: string, m: StoredMessage): SendOutcome {
  const s = m.resend ? m.resend.settlement : m.settlement;
  if (s) {
    return {
      messageId,
      status: s.status,
      at: s.at,
      ...(s.wamid ? { wamid: s.wamid } : {}),
      ...(s.reason ? { reason: s.reason } : {}),
      ...(s.error ? { error: s.error } : {}),
      ...(s.sentAs ? { sentAs: s.sentAs } : {}),
    };
  }
  return { messageId, status: m.doc?.status ?? 'accepted', at: m.doc?.updatedAt ?? '' };
}
