import type { Collection } from 'mongodb';
import { isDuplicateKey, type Collections, type SendPauseDoc } from '../adapters/store/db';

/** What a claim met: both slots are now this caller's, or which one another sender holds. */
export type SlotClaim = 'claimed' | 'cap_taken' | 'pair_taken';

/**
 * Takes the cap slot `id` and, with `pair`, the recipient's pair slot, in one insert (one
 * statement: the unique `_id` and the unique `pair` index are both checked in it). On a refusal,
 * which slot was taken: MongoDB names the index (`keyPattern`); FerretDB does not, so the cap slot
 * is then read by `_id` (absent: the pair slot was the taken one). Taken both: `cap_taken`.
 */
export async function claimSlot(c: Collections, id: string, expiresAt: number, pair?: string): Promise<SlotClaim> {
  try {
    await c.sendSlots.insertOne(pair === undefined ? { _id: id, expiresAt } : { _id: id, pair, expiresAt });
    return 'claimed';
  } catch (err) {
    if (!isDuplicateKey(err)) throw err;
    if (pair === undefined) return 'cap_taken';
    const keyPattern = (err as { keyPattern?: Record<string, unknown> }).keyPattern;
    if (keyPattern && 'pair' in keyPattern) return 'pair_taken';
    if (keyPattern && '_id' in keyPattern) return 'cap_taken';
    return (await c.sendSlots.findOne({ _id: id }, { projection: { _id: 1 } })) ? 'cap_taken' : 'pair_taken';
  }
}

/** Records a back-off for `key` until `until` (epoch ms). A second pause of the same second is dropped. */
export async function recordPause(c: Collections, key: string, until: number, now: number): Promise<void> {
  try {
    await c.sendPauses.insertOne({ _id: `${key}@${Math.floor(now / 1000)}`, key, until });
  } catch (err) {
    if (!isDuplicateKey(err)) throw err;
  }
}

/**
 * The latest `until` among `key`'s pauses (0 if none is running). Deletes, by exact `_id`, the
 * pauses of `key` that ended more than `keepMs` ago.
 */
export async function pausedUntil(c: Collections, key: string, now: number, keepMs = 60_000): Promise<number> {
  const col: Collection<SendPauseDoc> = c.sendPauses;
  const docs = await col.find({ _id: { $gte: `${key}@`, $lt: `${key}@~` } }).toArray();
  let until = 0;
  const stale: string[] = [];
  for (const d of docs) {
    if (d.key !== key) continue;
    until = Math.max(until, d.until);
    if (d.until < now - keepMs) stale.push(d._id);
  }
  for (const id of stale) await col.deleteOne({ _id: id });
  return until;
}
