import type { MessageStatus, MetaErrorInfo, SendOutcome } from '../contracts';
import { outcomeOf, sendKey } from './messages.store';
import {
  deleteByIds,
  insertOnce,
  isDuplicateKey,
  isOnlyDuplicateKeys,
  writeErrorsOf,
  type Collections,
  type QueueDoc,
  type SettlementDoc,
} from '../adapters/store/db';

/**
 * The queue, one per WABA, in two lanes: `front` (messages queued again after Meta failed them; sent
 * first, in acceptance order) and `main` (in the order the API queued them). Every operation is by
 * exact `_id` (an index search on MongoDB, and on FerretDB with the wrapper's `_id` index), so its
 * cost does not grow with the queue or with history:
 *
 * - A position `n` of a lane is taken by inserting its claim (`queue_claims`, `_id` = the entry's
 *   `_id`): atomic on a unique key on both stores, and never given twice, since claims stay after
 *   their entry left. The entry is inserted after its claim.
 * - Marks (`queue_marks`, one document per WABA for both lanes: one read) say where to look: a
 *   lane's `tail`, the highest position known taken (a hint raised with `$max` by whoever queues; it
 *   may lag when two processes raise it at once, so a reader looks past it until a position has no
 *   claim), and its `head`, every position up to it gone for good (raised by the drain,
 *   `advanceHead`). On FerretDB a `$max` reads, then writes, so two raises of the document at once
 *   (a tail and a head, or two tails) may leave one of them lower: each mark only ever lags (a
 *   write puts back values that held before), and readers are correct with marks that lag.
 * - Readers walk positions from `head + 1` by point reads, skipping positions whose entry left.
 *
 * Correct with any number of processes: queueing is insert-only; only the WABA's lifecycle workflow
 * (its drain) removes entries and raises `head`.
 */

export type QueueLane = 'front' | 'main';
const LANES: readonly QueueLane[] = ['front', 'main'];

const pad = (n: number): string => String(n).padStart(12, '0');

/** `_id` of the main lane's entry at position `n` (`n` ≥ 1). */
export const queueEntryId = (wabaId: string, n: number): string => `${wabaId}:${pad(n)}`;

/** `_id` of the front lane's entry at position `n` (sorts before every main entry of its WABA). */
export const frontEntryId = (wabaId: string, n: number): string => `${wabaId}:${pad(0)}~F${pad(n)}`;

const entryIdOf = (wabaId: string, lane: QueueLane, n: number): string =>
  lane === 'main' ? queueEntryId(wabaId, n) : frontEntryId(wabaId, n);

/** The entry's `seq`: unique per WABA over both lanes. */
const seqOf = (lane: QueueLane, n: number): number => (lane === 'main' ? n : -n);

type MarkField = 'mainHead' | 'mainTail' | 'frontHead' | 'frontTail';
const markField = (lane: QueueLane, mark: 'head' | 'tail'): MarkField => `${lane}${mark === 'head' ? 'Head' : 'Tail'}`;

/** A claim this old without its entry is taken for an abandoned one (its queueing process died). */
export const ABANDONED_CLAIM_MS = 60_000;

/** Point reads issued at once by a walk. */
const READS_AT_ONCE = 32;

/** The filter for live entries (tombstones are not waiting messages). */
const LIVE = { tombstone: { $ne: true as const } };

type LaneMarks = { head: number; tail: number };

/** Both lanes' marks as one read found them (see `nextEntries`, `advanceHead`). */
export type QueueMarks = Record<QueueLane, LaneMarks>;

/** Both lanes' marks: one read by `_id` (the WABA's marks document). */
async function readMarks(c: Collections, wabaId: string): Promise<QueueMarks> {
  const doc = await c.queueMarks.findOne({ _id: wabaId });
  return {
    main: { head: doc?.mainHead ?? 0, tail: doc?.mainTail ?? 0 },
    front: { head: doc?.frontHead ?? 0, tail: doc?.frontTail ?? 0 },
  };
}

/**
 * Raises a lane's mark to at least `n` (`$max`, by exact `_id`). Two processes raising the document
 * at once may leave a lower value on FerretDB (its updates read, then write): marks are hints that may lag.
 */
async function raiseMark(c: Collections, wabaId: string, lane: QueueLane, mark: 'head' | 'tail', n: number) {
  for (let attempt = 0; ; attempt++) {
    try {
      await c.queueMarks.updateOne({ _id: wabaId }, { $max: { [markField(lane, mark)]: n } }, { upsert: true });
      return;
    } catch (err) {
      if (!isDuplicateKey(err) || attempt > 0) throw err; // two first upserts raced: update the winner's
    }
  }
}

export type NewQueueEntry = Omit<QueueDoc, '_id' | 'seq'>;

/** Where a queue entry sits. */
export interface QueuedAt {
  /** The entry's `_id`. */
  id: string;
  /** Its lane position (`seq`): `n` in the main lane, `-n` in the front lane. */
  seq: number;
}

/**
 * The document that closes a claim whose entry never came (or was not needed): it takes the
 * entry's `_id`, so a late insert of that entry fails, and carries `storedAt` for retention. Its
 * `messageId` is its own (the queue's unique `messageId` index).
 */
function tombstone(wabaId: string, lane: QueueLane, n: number): QueueDoc {
  const id = entryIdOf(wabaId, lane, n);
  return {
    _id: id,
    wabaId,
    seq: seqOf(lane, n),
    messageId: `~closed:${id}`,
    phoneNumberId: '',
    to: '',
    content: { type: 'text', text: { body: '' } },
    enqueuedAt: new Date().toISOString(),
    notify: false,
    tombstone: true,
    storedAt: new Date(),
  };
}

/**
 * Takes the next position of a lane and puts `entry` there. A message already queued is not queued
 * twice (unique `messageId`): its entry is returned. Costs one marks read, one claim insert per
 * position tried (one, unless another process queued at the same moment), one entry insert and one
 * mark update, all by `_id`.
 */
async function enqueueIn(c: Collections, lane: QueueLane, entry: NewQueueEntry): Promise<QueuedAt> {
  const { wabaId, messageId } = entry;
  const marks = (await readMarks(c, wabaId))[lane];
  let n = Math.max(marks.head, marks.tail) + 1;
  for (let attempt = 0; attempt < 200; attempt++, n++) {
    const id = entryIdOf(wabaId, lane, n);
    const claim = { _id: id, wabaId, messageId, ...(entry.round ? { round: entry.round } : {}), storedAt: new Date() };
    if (!(await insertOnce(c.queueClaims, claim))) continue; // taken: the tail hint lagged
    try {
      await c.queue.insertOne({ _id: id, seq: seqOf(lane, n), ...entry });
    } catch (err) {
      if (!isDuplicateKey(err)) throw err;
      // A reader closed this claim (we were slower than ABANDONED_CLAIM_MS): take the next position.
      if (await c.queue.findOne({ _id: id }, { projection: { _id: 1 } })) continue;
      // The message is queued already (its unique `messageId`): close our claim and answer with that entry.
      await insertOnce(c.queue, tombstone(wabaId, lane, n));
      const existing = await c.queue.findOne({ messageId }, { projection: { _id: 1, seq: 1 } });
      if (existing) return { id: existing._id, seq: existing.seq };
      continue; // it left meanwhile: queue it again (its send key keeps it from being POSTed twice)
    }
    await raiseMark(c, wabaId, lane, 'tail', n);
    return { id, seq: seqOf(lane, n) };
  }
  throw new Error(`could not take a ${lane} queue position for WABA ${wabaId} after 200 attempts`);
}

/**
 * Appends `entry` to its WABA's queue (the main lane) and returns where it sits. Correct with any
 * number of processes, on FerretDB too: a position is taken by inserting its claim, so a process
 * whose tail hint is stale never reuses a position the drain had already freed.
 */
export function enqueue(c: Collections, entry: NewQueueEntry): Promise<QueuedAt> {
  return enqueueIn(c, 'main', entry);
}

/**
 * Puts a message at the front of its WABA's queue (the front lane: sent before every main entry,
 * in acceptance order among front entries); idempotent per message (a message already queued keeps
 * its entry).
 */
export function enqueueFront(c: Collections, entry: NewQueueEntry & { acceptedAt: string }): Promise<QueuedAt> {
  return enqueueIn(c, 'front', entry);
}

/**
 * Fills the main lane of a WABA whose queue was never used with `entries` at positions 1..k, in
 * bulk (`insertMany`, 500 at a time): for loading a queue in one go (benchmarks), not for live
 * queueing, where `enqueue` takes each position by its claim.
 */
export async function loadEmptyQueue(c: Collections, wabaId: string, entries: readonly NewQueueEntry[]): Promise<void> {
  const marks = (await readMarks(c, wabaId)).main;
  if (marks.tail > 0 || marks.head > 0) throw new Error(`WABA ${wabaId}'s queue was used before`);
  for (let i = 0; i < entries.length; i += 500) {
    const part = entries.slice(i, i + 500).map((e, j) => ({ n: i + j + 1, e }));
    const storedAt = new Date();
    await c.queueClaims.insertMany(
      part.map(({ n, e }) => ({ _id: queueEntryId(wabaId, n), wabaId, messageId: e.messageId, storedAt })),
    );
    await c.queue.insertMany(part.map(({ n, e }) => ({ _id: queueEntryId(wabaId, n), seq: n, ...e })));
    await raiseMark(c, wabaId, 'main', 'tail', part[part.length - 1]!.n);
  }
}

/** Where a walk over a WABA's queue stopped: the last position it read. */
export interface QueueCursor {
  lane: QueueLane;
  n: number;
}

/**
 * Reads up to `limit` live entries of one lane from position `from`, by `_id`: positions up to the
 * tail hint in parallel batches, then one at a time while a position has a claim (the hint may lag
 * behind the last claims; an entry lands after its claim). Returns them and the last position read.
 */
async function walkLane(
  c: Collections,
  wabaId: string,
  lane: QueueLane,
  from: number,
  tail: number,
  limit: number,
  projection?: Record<string, 1>,
): Promise<{ entries: QueueDoc[]; last: number; end: boolean }> {
  const entries: QueueDoc[] = [];
  const options = projection ? { projection: { ...projection, tombstone: 1 } } : {};
  let n = from;
  while (n <= tail) {
    const count = Math.min(READS_AT_ONCE, tail - n + 1, Math.max(1, limit - entries.length));
    const docs = await Promise.all(
      Array.from({ length: count }, (_, i) => c.queue.findOne({ _id: entryIdOf(wabaId, lane, n + i) }, options)),
    );
    for (const [i, doc] of docs.entries()) {
      if (doc && !doc.tombstone) entries.push(doc as QueueDoc);
      if (entries.length >= limit) return { entries, last: n + i, end: false };
    }
    n += count;
  }
  for (;;) {
    const id = entryIdOf(wabaId, lane, n);
    const [claim, doc] = await Promise.all([
      c.queueClaims.findOne({ _id: id }, { projection: { _id: 1 } }),
      c.queue.findOne({ _id: id }, options),
    ]);
    if (!claim && !doc) return { entries, last: n - 1, end: true };
    if (doc && !doc.tombstone) entries.push(doc as QueueDoc);
    if (entries.length >= limit) return { entries, last: n, end: false };
    n++;
  }
}

/**
 * The next `limit` entries of a WABA's queue after `after` (from the start without one), in queue
 * order: the front lane (by acceptance time within a page), then the main lane. Returns them, the
 * cursor to continue from, `end` when the walk reached the main lane's end (no claim past the last
 * position read: a next page would only find entries queued after this read) and the marks it read
 * (for `advanceHead`). Costs the marks' read and a point read per position walked: the entries,
 * those that left since the last `advanceHead`, and at the end one position's claim and entry.
 */
export async function nextEntries(
  c: Collections,
  wabaId: string,
  after: QueueCursor | undefined,
  limit: number,
  projection?: Record<string, 1>,
): Promise<{ entries: QueueDoc[]; cursor: QueueCursor; end: boolean; marks: QueueMarks }> {
  const entries: QueueDoc[] = [];
  let cursor: QueueCursor = after ?? { lane: 'front', n: -1 };
  let end = false;
  const marks = await readMarks(c, wabaId);
  for (const lane of LANES.slice(LANES.indexOf(cursor.lane))) {
    const { head, tail } = marks[lane];
    const from = cursor.lane === lane && cursor.n >= 0 ? Math.max(cursor.n + 1, head + 1) : head + 1;
    const walked = await walkLane(c, wabaId, lane, from, tail, limit - entries.length, projection);
    if (lane === 'front') walked.entries.sort((a, b) => (a.acceptedAt ?? '').localeCompare(b.acceptedAt ?? ''));
    entries.push(...walked.entries);
    cursor = { lane, n: walked.last };
    if (!walked.end) break;
    end = lane === 'main';
  }
  return { entries, cursor, end, marks };
}

/**
 * Raises each lane's `head` past the positions whose entries left for good, so later walks start
 * there. A position without an entry has left when its claim is gone (retention), its message's
 * send is settled, or its claim is older than `ABANDONED_CLAIM_MS` (then a tombstone closes it, so
 * the entry can no longer land). Stops at a live entry or a fresh claim whose entry may still come.
 * Called by the drain with the entries it removed (no reads for those); otherwise a few point reads
 * per position that left since the last call.
 */
export async function advanceHead(
  c: Collections,
  wabaId: string,
  /** Entry ids the caller removed itself (settled and deleted): known gone, not read again. */
  removed: ReadonlySet<string> = new Set(),
  /**
   * The marks the caller's last `nextEntries` read (no read of them here). Only the WABA's drain
   * raises a head, so the heads are current; a tail that moved on since only stops this call short.
   */
  known?: QueueMarks,
): Promise<void> {
  const marks = known ?? (await readMarks(c, wabaId));
  for (const lane of LANES) {
    const { head, tail } = marks[lane];
    let gone = head;
    scan: for (let n = head + 1; n <= tail; n += READS_AT_ONCE) {
      const ns = Array.from({ length: Math.min(READS_AT_ONCE, tail - n + 1) }, (_, i) => n + i);
      const verdicts = await Promise.all(
        ns.map((m) => removed.has(entryIdOf(wabaId, lane, m)) || hasLeft(c, wabaId, lane, m)),
      );
      for (const [i, left] of verdicts.entries()) {
        if (!left) break scan;
        gone = ns[i]!;
      }
    }
    if (gone > head) await raiseMark(c, wabaId, lane, 'head', gone);
  }
}

/** Whether lane position `n` has left for good (see `advanceHead`). */
async function hasLeft(c: Collections, wabaId: string, lane: QueueLane, n: number): Promise<boolean> {
  const id = entryIdOf(wabaId, lane, n);
  const doc = await c.queue.findOne({ _id: id }, { projection: { tombstone: 1 } });
  if (doc) return doc.tombstone === true;
  const claim = await c.queueClaims.findOne({ _id: id });
  if (!claim) return true;
  if (await findSettlement(c, claim.messageId, claim.round)) return true;
  if (Date.now() - claim.storedAt.getTime() < ABANDONED_CLAIM_MS) return false;
  return insertOnce(c.queue, tombstone(wabaId, lane, n)); // false: the entry just landed
}

/**
 * The WABAs with messages waiting (`distinct` over the queue, which holds only what waits: an
 * index scan on MongoDB, a scan of the queue on FerretDB). For a rare fan-out, not a hot path.
 */
export async function wabasWithQueued(c: Collections): Promise<string[]> {
  return (await c.queue.distinct('wabaId', LIVE)) as string[];
}

/**
 * Whether any message waits in a WABA's queue: the marks, then the main lane from its head and, only
 * when that is empty, the front lane, each walked one position at a time up to its first live entry
 * (see `nextEntries`). A queue whose main lane holds an entry at its head costs two reads; an empty
 * one five, as `countQueued`. For a decision that only asks "anything to drain?", where a count
 * would read every entry.
 */
export async function anyQueued(c: Collections, wabaId: string): Promise<boolean> {
  const marks = await readMarks(c, wabaId);
  for (const lane of ['main', 'front'] as const) {
    const { head, tail } = marks[lane];
    const walked = await walkLane(c, wabaId, lane, head + 1, tail, 1, { _id: 1 });
    if (walked.entries.length > 0) return true;
  }
  return false;
}

/**
 * How many messages wait in a WABA's queue: the marks, then both lanes walked at once, a point read
 * per position walked (see `nextEntries`); an empty queue costs five reads in two round trips.
 */
export async function countQueued(c: Collections, wabaId: string): Promise<number> {
  const marks = await readMarks(c, wabaId);
  const counts = await Promise.all(
    LANES.map(async (lane) => {
      const { head, tail } = marks[lane];
      let count = 0;
      for (let from = head + 1; ;) {
        const walked = await walkLane(c, wabaId, lane, from, tail, 1_000, { _id: 1 });
        count += walked.entries.length;
        if (walked.end) return count;
        from = walked.last + 1;
      }
    }),
  );
  return counts.reduce((a, b) => a + b, 0);
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
  /** The service window was closed: the message's fallback template went instead. */
  sentAs?: 'fallback_template';
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
  return new Set(writeErrorsOf(err).flatMap((e) => (typeof e.index === 'number' ? [e.index] : [])));
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
    ...(s.sentAs ? { sentAs: s.sentAs } : {}),
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
    await deleteByIds(c.queue, queueIds);
  }
}

/** Removes queue entries whose messages are already settled. */
export async function removeEntries(c: Collections, queueIds: readonly string[]): Promise<void> {
  await deleteByIds(c.queue, queueIds);
}

/** The outcome of a message's send `round` (the first by default), when it has one. */
export function findSettlement(c: Collections, messageId: string, round?: number): Promise<SettlementDoc | null> {
  return c.settlements.findOne({ _id: sendKey(messageId, round) });
}

/**
 * True while the message has an entry in its WABA's queue. With `entryId` (where the message was
 * queued, `MessageDoc.queueEntryId`) a point read; without it (the API's acceptance does not record
 * it, nor does an attempt interrupted between the entry's insert and that record: admission.ts) a
 * scan of the queue on FerretDB.
 */
export async function isQueued(c: Collections, messageId: string, entryId?: string): Promise<boolean> {
  if (entryId) {
    // Absent: it left (or a stale id: then queueing it again finds its entry by `messageId`).
    const entry = await c.queue.findOne({ _id: entryId }, { projection: { messageId: 1 } });
    return entry?.messageId === messageId;
  }
  return (await c.queue.findOne({ messageId }, { projection: { _id: 1 } })) !== null;
}

/** Queue depth over all WABAs and the oldest entry's `enqueuedAt` (epoch ms), for metrics. */
export async function queueStats(c: Collections): Promise<{ depth: number; oldestEnqueuedAt?: number }> {
  const [depth, [oldest]] = await Promise.all([
    c.queue.countDocuments(LIVE),
    c.queue
      .find(LIVE, { projection: { enqueuedAt: 1 } })
      .sort({ enqueuedAt: 1 })
      .limit(1)
      .toArray(),
  ]);
  const at = oldest ? Date.parse(oldest.enqueuedAt) : NaN;
  return { depth, ...(Number.isFinite(at) ? { oldestEnqueuedAt: at } : {}) };
}
