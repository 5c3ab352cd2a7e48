import type { MessageStatus, MetaErrorInfo, SendOutcome } from '../../../workflows/contracts';
import { outcomeOf, sendKey } from './messages';
import { isDuplicateKey, isOnlyDuplicateKeys, type Collections, type QueueDoc, type SettlementDoc } from './db';

/** `_id` of a queue entry: the WABA id and a zero-padded sequence number sort together. */
export const queueEntryId = (wabaId: string, seq: number): string => `${wabaId}:${String(seq).padStart(12, '0')}`;

/**
 * `_id` of an entry queued again at the front (a message Meta failed after accepting it): before
 * every numbered entry of its WABA (`<wabaId>:000000000000~…` sorts below `<wabaId>:000000000001`),
 * and among such entries in acceptance order. Its `seq` is 0.
 */
export const frontEntryId = (wabaId: string, acceptedAt: string, messageId: string): string =>
  `${queueEntryId(wabaId, 0)}~${acceptedAt}~${messageId}`;

/**
 * Range filter over one WABA's entries by `_id`, after `afterId` (an index range on MongoDB, a
 * scan on FerretDB). Without `afterId`, from the front.
 */
function wabaRange(wabaId: string, afterId?: string) {
  return { _id: { $gt: afterId ?? queueEntryId(wabaId, 0), $lt: `${wabaId};` } };
}

export type NewQueueEntry = Omit<QueueDoc, '_id' | 'seq'>;

async function readTail(c: Collections, wabaId: string): Promise<number> {
  const [last] = await c.queue
    .find(wabaRange(wabaId), { projection: { seq: 1 } })
    .sort({ _id: -1 })
    .limit(1)
    .toArray();
  return Math.max(0, last?.seq ?? 0); // front entries (negative `seq`) are not numbered
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

/**
 * Puts a message at the front of its WABA's queue (see `frontEntryId`); idempotent per message (a
 * message already queued keeps its entry). Its `seq` is negative (minus its acceptance time in ms,
 * lower on a clash), unique per WABA like every entry's.
 */
export async function enqueueFront(c: Collections, entry: NewQueueEntry & { acceptedAt: string }): Promise<void> {
  const { acceptedAt, ...rest } = entry;
  const _id = frontEntryId(entry.wabaId, acceptedAt, entry.messageId);
  let seq = -Math.max(1, Date.parse(acceptedAt) || 1);
  for (let attempt = 0; attempt < 50; attempt++, seq--) {
    try {
      await c.queue.insertOne({ _id, seq, ...rest });
      return;
    } catch (err) {
      if (!isDuplicateKey(err)) throw err;
      // Queued already (this `_id`, or the message elsewhere in the queue), or another front entry has this `seq`.
      if (await isQueued(c, entry.messageId)) return;
    }
  }
  throw new Error(`could not put message ${entry.messageId} at the front of WABA ${entry.wabaId}'s queue`);
}

/**
 * The next `limit` entries of a WABA's queue after the entry `afterId` (from the front without
 * one), in queue order: front entries, then by sequence.
 */
export function nextEntries(
  c: Collections,
  wabaId: string,
  afterId: string | undefined,
  limit: number,
): Promise<QueueDoc[]> {
  return c.queue.find(wabaRange(wabaId, afterId)).sort({ _id: 1 }).limit(limit).toArray();
}

/**
 * The WABAs with messages waiting (`distinct` over the queue, which holds only what waits: an
 * index scan on MongoDB, a scan of the queue on FerretDB). For a rare fan-out, not a hot path.
 */
export async function wabasWithQueued(c: Collections): Promise<string[]> {
  return (await c.queue.distinct('wabaId')) as string[];
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
  /** The send's round (2: the send after a late failure, see `late_failures`); absent: 1. */
  round?: number;
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
    _id: sendKey(s.messageId, s.round),
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

/** The outcome of a message's send `round` (the first by default), when it has one. */
export function findSettlement(c: Collections, messageId: string, round?: number): Promise<SettlementDoc | null> {
  return c.settlements.findOne({ _id: sendKey(messageId, round) });
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
