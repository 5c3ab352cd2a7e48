import { insertFacts, type Collections, type MessageStatusDoc } from '../adapters/store/db';

/**
 * Webhook records: `message_statuses` (Meta's delivery statuses), keyed so that a redelivery
 * collides. The `account_events` audit is written through ./outbox.ts.
 */

/** Inserts delivery statuses; redelivered ones collide on `_id` (`<wamid>:<status>`) and are skipped. */
export function recordStatuses(c: Collections, docs: MessageStatusDoc[]): Promise<void> {
  const storedAt = new Date();
  return insertFacts(
    c.messageStatuses,
    docs.map((d) => ({ ...d, storedAt })),
  );
}

/** The statuses Meta reported for one sent message (`wamid`), by status name. */
export async function statusesOf(c: Collections, wamid: string): Promise<MessageStatusDoc[]> {
  const found = await Promise.all(
    ['sent', 'delivered', 'read', 'failed'].map((s) => c.messageStatuses.findOne({ _id: `${wamid}:${s}` })),
  );
  return found.filter((s): s is MessageStatusDoc => s !== null);
}
