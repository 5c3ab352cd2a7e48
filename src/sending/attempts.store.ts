import {
  insertOnce,
  type Collections,
  type SendAttemptDoc,
  type SendClaimDoc,
  type SendConfirmationDoc,
} from '../adapters/store/db';

/** The ledger entry of a message, or null before its first send. */
export function readAttempt(c: Collections, messageId: string): Promise<SendAttemptDoc | null> {
  return c.sendAttempts.findOne({ _id: messageId });
}

/** Inserts a message's first ledger entry; false when one already exists (another sender started). */
export function insertAttempt(c: Collections, doc: SendAttemptDoc): Promise<boolean> {
  return insertOnce(c.sendAttempts, { ...doc, storedAt: new Date() });
}

/**
 * Claims POST number `n` (≥ 2) of a send key: true for the one caller whose insert wins (atomic on
 * MongoDB and FerretDB), false when another sender already claimed it.
 */
export function claimPost(c: Collections, key: string, n: number): Promise<boolean> {
  return insertOnce(c.sendClaims, { _id: `${key}/${n}`, storedAt: new Date() });
}

/** The claim of POST `n` of a send key, or null. */
export function readPostClaim(c: Collections, key: string, n: number): Promise<SendClaimDoc | null> {
  return c.sendClaims.findOne({ _id: `${key}/${n}` });
}

/** Updates a ledger entry by exact `_id` (one writer per message at a time: a later POST is claimed first, `claimPost`). */
export async function updateAttempt(
  c: Collections,
  messageId: string,
  set: Partial<Omit<SendAttemptDoc, '_id'>>,
): Promise<void> {
  await c.sendAttempts.updateOne({ _id: messageId }, { $set: set });
}

/** A status webhook's confirmation of a message, or null. */
export function readConfirmation(c: Collections, messageId: string): Promise<SendConfirmationDoc | null> {
  return c.sendConfirmations.findOne({ _id: messageId });
}

/** Records a confirmation (insert-only; a second one for the message is dropped). */
export async function insertConfirmation(c: Collections, doc: SendConfirmationDoc): Promise<void> {
  await insertOnce(c.sendConfirmations, { ...doc, storedAt: new Date() });
}
