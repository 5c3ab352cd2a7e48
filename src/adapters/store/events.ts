import {
  isDuplicateKey,
  isOnlyDuplicateKeys,
  type AccountEventDoc,
  type Collections,
  type MessageStatusDoc,
} from './db';

/**
 * Webhook records: `account_events` (the audit and dedupe record of every `account_update`) and
 * `message_statuses` (Meta's delivery statuses), both keyed so that a redelivery collides.
 */

/**
 * Records an `account_update` event. Returns `new` when this call inserted it, `pending` when an
 * earlier delivery recorded it but did not finish handing it over (hand it over again), `done`
 * when it was already handled (a redelivery: do nothing).
 */
export async function recordAccountEvent(c: Collections, doc: AccountEventDoc): Promise<'new' | 'pending' | 'done'> {
  try {
    await c.accountEvents.insertOne({ ...doc, storedAt: new Date() });
    return 'new';
  } catch (err) {
    if (!isDuplicateKey(err)) throw err;
    const first = await c.accountEvents.findOne({ _id: doc._id }, { projection: { outcome: 1 } });
    return first && first.outcome !== 'pending' ? 'done' : 'pending';
  }
}

/** Marks an event as handled (`signalled` to its workflow, or only `recorded`). */
export async function markAccountEventHandled(
  c: Collections,
  key: string,
  outcome: Exclude<AccountEventDoc['outcome'], 'pending'>,
  at: string,
): Promise<void> {
  await c.accountEvents.updateOne({ _id: key }, { $set: { outcome, handedOverAt: at } });
}

/** Inserts delivery statuses; redelivered ones collide on `_id` (`<wamid>:<status>`) and are skipped. */
export async function recordStatuses(c: Collections, docs: MessageStatusDoc[]): Promise<void> {
  try {
    const storedAt = new Date();
    await c.messageStatuses.insertMany(
      docs.map((d) => ({ ...d, storedAt })),
      { ordered: false },
    );
  } catch (err) {
    if (!isOnlyDuplicateKeys(err)) throw err;
  }
}

/** The statuses Meta reported for one sent message (`wamid`), by status name. */
export async function statusesOf(c: Collections, wamid: string): Promise<MessageStatusDoc[]> {
  const found = await Promise.all(
    ['sent', 'delivered', 'read', 'failed'].map((s) => c.messageStatuses.findOne({ _id: `${wamid}:${s}` })),
  );
  return found.filter((s): s is MessageStatusDoc => s !== null);
}
