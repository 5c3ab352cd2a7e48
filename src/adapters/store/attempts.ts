import { insertOnce, type Collections, type SendAttemptDoc, type SendConfirmationDoc } from './db';

/** The ledger entry of a message, or null before its first send. */
export function readAttempt(c: Collections, messageId: string): Promise<SendAttemptDoc | null> {
  return c.sendAttempts.findOne({ _id: messageId });
}

/** Inserts a message's first ledger entry; false when one already exists (another sender started). */
export function insertAttempt(c: Collections, doc: SendAttemptDoc): Promise<boolean> {
  return insertOnce(c.sendAttempts, doc);
}

/** Updates a ledger entry by exact `_id` (one writer per message at a time). */
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
  await insertOnce(c.sendConfirmations, doc);
}
