import type { MessageStatus, MetaErrorInfo, SendOutcome } from '../../../workflows/contracts';
import { outcomeOf } from './messages';
import { isDuplicateKey, isOnlyDuplicateKeys, type Collections, type QueueDoc, type SettlementDoc } from './db';

/** `_id` of a queue entry: the WABA id and a zero-padded sequence number sort together. */
export const queueEntryId = (wabaId: string, seq: number): string => `${wabaId}:${String(seq).padStart(12, '0')}`;

/** Range filter over one WABA's entries by `_id` (an index range on MongoDB, a scan on FerretDB). */
function wabaRange(wabaId: string, afterSeq = 0) {
  return { _id: { $gt: queueEntryId(wabaId, afterSeq), $lt: `${wabaId};` } };
}

export type NewQueueEntry = Omit<QueueDoc, '_id' | 'seq'>;

async function readTail(c: Collections, wabaId: string): Promise<number> {
  const [last] = await c.queue
    .find(wabaRange(wabaId), { projection: { seq: 1 } })
    .sort({ _id: -1 })
    .limit(1)
    .toArray();
  return last?.seq ?? 0;
}

/**
 * Appends `entry` to its WABA's queue with the next sequence number and returns that number.
 * Correct with any number of processes, on FerretDB too: the tail is read from the database on
 * every call (no process keeps a cached tail, which could be older than entries another process
 * queued and make this one reuse a lower number the drain had already freed), and the number is
 * taken by inserting its `_id` (atomic on a unique key); the loser of a race reads the tail again.
 * A message already queued is not queued twice (unique `messageId`): its existing number is
 * returned. Costs one tail read (an index seek on MongoDB; a scan of the queue, which holds only
 * what waits, on FerretDB) and one insert.
 */
export async function enqueue(c: Collections, entry: NewQueueEntry): Promise<number> {
  let tail = await readTail(c, entry.wabaId);
  for (let attempt = 0; attempt < 50; attempt++) {
    const seq = tail + 1;
    try {
      await c.queue.insertOne({ _id: queueEntryId(entry.wabaId, seq), seq, ...entry });
      return seq;
    } catch (err) {
      if (!isDuplicateKey(err)) throw err;
      const existing = await c.queue.findOne({ messageId: entry.messageId }, { projection: { seq: 1 } });
      if (existing) return existing.seq;
      tail = Math.max(seq, await readTail(c, entry.wabaId)); // someone else took `seq`
    }
  }
  throw new Error(`could not take a queue position for WABA ${entry.wabaId} after 50 attempts`);
}

/** The next `limit` entries of a WABA's queue after `afterSeq`, in sequence order. */
export function nextEntries(c: Collections, wabaId: string, afterSeq: number, limit: number): Promise<QueueDoc[]> {
  return c.queue.find(wabaRange(wabaId, afterSeq)).sort({ _id: 1 }).limit(limit).toArray();
}

/** How many messages wait in a WABA's queue. */
export function countQueued(c: Collections, wabaId: string): Promise<number> {
  return c.queue.countDocuments(wabaRange(wabaId));
}

/** How a queued (or direct) message ended. */
export interface Settlement {
  messageId: string;
  /** The queue entry to remove, when the message was queued. */
  queueId?: string;
  status: Extract<MessageStatus, 'sent' | 'failed' | 'expired' | 'cancelled'>;
  wamid?: string;
  reason?: string;
  error?: MetaErrorInfo;
  at: string;
  attempts?: number;
  /** Whether a send workflow waits for this outcome (not stored). */
  notify?: boolean;
}

/** Told about settlements that were recorded for the first time (metrics); must not throw. */
export type SettlementListener = (settled: readonly Settlement[]) => void;

const listeners = new WeakMap<Collections, SettlementListener[]>();

/**
 * Calls `listener` after `recordSettlements` on these collections recorded outcomes, with only the
 * settlements that were new (a message already settled keeps its first outcome and is not repeated).
 * Returns the function that removes it.
 */
export function onSettlementsRecorded(c: Collections, listener: SettlementListener): () => void {
  const list = listeners.get(c) ?? [];
  list.push(listener);
  listeners.set(c, list);
  return () => {
    const i = list.indexOf(listener);
    if (i >= 0) list.splice(i, 1);
  };
}

/** Indexes of an `insertMany` batch that failed (duplicate keys, see `isOnlyDuplicateKeys`). */
function failedIndexes(err: unknown): Set<number> {
  const writeErrors = (err as { writeErrors?: { index?: number }[] | { index?: number } }).writeErrors;
  const list = writeErrors === undefined ? [] : Array.isArray(writeErrors) ? writeErrors : [writeErrors];
  return new Set(list.flatMap((e) => (typeof e.index === 'number' ? [e.index] : [])));
}

/** Settlements written per insert and delete command (bounds the size of one command). */
const SETTLEMENTS_PER_WRITE = 500;

/** The document a settlement is stored as (`storedAt`: the retention clock, see retention.ts). */
export function settlementDoc(s: Settlement): SettlementDoc {
  return {
    _id: s.messageId,
    status: s.status,
    at: s.at,
    storedAt: new Date(),
    ...(s.wamid ? { wamid: s.wamid } : {}),
    ...(s.reason ? { reason: s.reason } : {}),
    ...(s.error ? { error: s.error } : {}),
    ...(s.attempts !== undefined ? { attempts: s.attempts } : {}),
  };
}

/** The outcome a settlement gives the message (what its send workflow returns). */
export function outcomeOfSettlement(s: Settlement): SendOutcome {
  return outcomeOf(s.messageId, { doc: null, settlement: settlementDoc(s) });
}

/**
 * Records settlements: the outcomes first (insert-only; a message already settled keeps its first
 * outcome), then removes the queue entries (so a crash between the two leaves an entry whose
 * message is already settled, which the drain skips, never a queue that lost a message). One
 * insert and one delete command per chunk, whatever the collections' sizes.
 */
export async function recordSettlements(c: Collections, settlements: readonly Settlement[]): Promise<void> {
  // Single-statement commands only: FerretDB 1.24 never answers an update command of 100 or more
  // statements, and a bulk of inserts plus one `deleteMany` per part has no such limit.
  for (let i = 0; i < settlements.length; i += SETTLEMENTS_PER_WRITE) {
    const part = settlements.slice(i, i + SETTLEMENTS_PER_WRITE);
    let fresh: readonly Settlement[] = part;
    try {
      await c.settlements.insertMany(part.map(settlementDoc), { ordered: false });
    } catch (err) {
      if (!isOnlyDuplicateKeys(err)) throw err;
      // Without per-document errors nothing says which were new: count none rather than twice.
      const failed = failedIndexes(err);
      fresh = failed.size === 0 ? [] : part.filter((_, j) => !failed.has(j));
    }
    if (fresh.length > 0) for (const listener of listeners.get(c) ?? []) listener(fresh);
    const queueIds = part.flatMap((s) => (s.queueId ? [s.queueId] : []));
    if (queueIds.length > 0) await c.queue.deleteMany({ _id: { $in: queueIds } });
  }
}

/** Removes queue entries whose messages are already settled. */
export async function removeEntries(c: Collections, queueIds: readonly string[]): Promise<void> {
  if (queueIds.length > 0) await c.queue.deleteMany({ _id: { $in: [...queueIds] } });
}

/** A message's final outcome, when it has one. */
export function findSettlement(c: Collections, messageId: string): Promise<SettlementDoc | null> {
  return c.settlements.findOne({ _id: messageId });
}

/** True while the message has an entry in its WABA's queue. */
export async function isQueued(c: Collections, messageId: string): Promise<boolean> {
  return (await c.queue.findOne({ messageId }, { projection: { _id: 1 } })) !== null;
}

/** Queue depth over all WABAs and the oldest entry's `enqueuedAt` (epoch ms), for metrics. */
export async function queueStats(c: Collections): Promise<{ depth: number; oldestEnqueuedAt?: number }> {
  const [depth, [oldest]] = await Promise.all([
    c.queue.countDocuments({}),
    c.queue
      .find({}, { projection: { enqueuedAt: 1 } })
      .sort({ enqueuedAt: 1 })
      .limit(1)
      .toArray(),
  ]);
  const at = oldest ? Date.parse(oldest.enqueuedAt) : NaN;
  return { depth, ...(Number.isFinite(at) ? { oldestEnqueuedAt: at } : {}) };
}
