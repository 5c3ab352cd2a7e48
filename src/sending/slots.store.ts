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

/** A number's pauses as one read found them: its own (130429) and its recipients' (131056). */
export interface NumberPauses {
  /** Until when the number may not send (epoch ms; 0 if no pause is running). */
  number: number;
  /** Per recipient, until when nothing may be sent to it (only recipients with a pause). */
  pairs: Map<string, number>;
}

/**
 * The latest `until` of a number's pauses and of each of its recipients' (`<number>>recipient`),
 * in one read: the `_id` range of both (pair keys sort just before the number's, `>` before `@`).
 * Deletes, by exact `_id`, the pauses that ended more than `keepMs` ago. The read returns the
 * recipients paused now or in the last `keepMs` (at most one document per recipient and second of
 * a 131056): a number whose recipients keep hitting their pair limit makes it longer, not history.
 */
export async function readPauses(
  c: Collections,
  phoneNumberId: string,
  now: number,
  keepMs = 60_000,
): Promise<NumberPauses> {
  const col: Collection<SendPauseDoc> = c.sendPauses;
  const docs = await col.find({ _id: { $gte: `${phoneNumberId}>`, $lt: `${phoneNumberId}@~` } }).toArray();
  const pauses: NumberPauses = { number: 0, pairs: new Map() };
  const pairPrefix = `${phoneNumberId}>`;
  const stale: string[] = [];
  for (const d of docs) {
    if (d.key === phoneNumberId) pauses.number = Math.max(pauses.number, d.until);
    else if (d.key.startsWith(pairPrefix)) {
      const to = d.key.slice(pairPrefix.length);
      pauses.pairs.set(to, Math.max(pauses.pairs.get(to) ?? 0, d.until));
    } else continue; // another number whose id starts with this one's and a character between
    if (d.until < now - keepMs) stale.push(d._id);
  }
  for (const id of stale) await col.deleteOne({ _id: id });
  return pauses;
}
