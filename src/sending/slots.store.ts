import type { Collection } from 'mongodb';
import { isDuplicateKey, type Collections, type SendPauseDoc } from '../adapters/store/db';

/** Takes the slot `id`: true if this caller now holds it, false if someone else already did. */
export async function claimSlot(c: Collections, id: string, expiresAt: number): Promise<boolean> {
  try {
    await c.sendSlots.insertOne({ _id: id, expiresAt });
    return true;
  } catch (err) {
    if (isDuplicateKey(err)) return false;
    throw err;
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
