import { randomBytes } from 'node:crypto';
import type { MongoClient } from 'mongodb';
import { MongoClient as Client } from 'mongodb';
import { collections, connectMongo, groupInsert, type Collections } from '../../src/adapters/store/db';
import {
  listPhoneNumbers,
  numbersOfWaba,
  registerPhoneNumber,
  wabaHasNumbers,
} from '../../src/lifecycle/phone-numbers.store';
import {
  ABANDONED_CLAIM_MS,
  advanceHead,
  anyQueued,
  countQueued,
  enqueue,
  enqueueFront,
  frontEntryId,
  isQueued,
  nextEntries,
  queueEntryId,
  recordSettlements,
  type NewQueueEntry,
} from '../../src/sending/queue.store';
import { findWaba, saveWaba } from '../../src/lifecycle/wabas.store';
import { withMethod } from '../support/intercept';

/**
 * A database of its own on the test server for one describe block: connected before its tests,
 * dropped after them. `c()` is valid from the block's first test on.
 */
function scratchDatabase(prefix: string): { name: string; c: () => Collections } {
  const name = `${prefix}_${randomBytes(4).toString('hex')}`;
  let conn: { client: MongoClient; c: Collections } | undefined;
  beforeAll(async () => {
    conn = await connectMongo(process.env.MONGODB_URI!, name);
  });
  afterAll(async () => {
    await conn?.client
      .db(name)
      .dropDatabase()
      .catch(() => undefined);
    await conn?.client.close();
  });
  return { name, c: () => conn!.c };
}

/** The queue store against the real MongoDB-wire server (FerretDB in tests). */
describe('queue store on the real MongoDB-wire server', () => {
  const scratch = scratchDatabase('store');
  const dbName = scratch.name;
  let c: Collections;
  beforeAll(() => {
    c = scratch.c();
  });

  const entry = (wabaId: string, i: number): NewQueueEntry => ({
    wabaId,
    messageId: `${wabaId}-m${i}`,
    phoneNumberId: '1',
    to: '15550000000',
    content: { type: 'text', text: { body: `b${i}` } },
    enqueuedAt: new Date().toISOString(),
    notify: false,
  });

  it('never puts a newer message before older ones when another process queued and the drain removed some', async () => {
    const wabaId = 'w' + randomBytes(4).toString('hex');
    // Two processes: two clients of the same database.
    const other = await connectMongo(process.env.MONGODB_URI!, dbName);
    try {
      for (let i = 1; i <= 3; i++) await enqueue(c, entry(wabaId, i)); // this process: 1..3
      for (let i = 4; i <= 10; i++) await enqueue(other.c, entry(wabaId, i)); // the other: 4..10
      const { entries: sent } = await nextEntries(c, wabaId, undefined, 5); // the drain settles 1..5
      await recordSettlements(
        c,
        sent.map((e) => ({ messageId: e.messageId, queueId: e._id, status: 'sent' as const, at: 'now' })),
      );
      const { seq } = await enqueue(c, entry(wabaId, 11)); // accepted last: must leave last
      expect(seq).toBe(11);
      const { entries: rest } = await nextEntries(c, wabaId, undefined, 100);
      expect(rest.map((e) => e.messageId)).toEqual([6, 7, 8, 9, 10, 11].map((i) => `${wabaId}-m${i}`));
    } finally {
      await other.client.close();
    }
  });

  it('gives concurrent senders distinct, gap-free sequence numbers and never queues a message twice', async () => {
    const wabaId = 'w' + randomBytes(4).toString('hex');
    // Two "processes" (separate handles, so separate tail caches) racing.
    const other = { ...c };
    const seqs = await Promise.all(
      Array.from({ length: 30 }, async (_, i) => (await enqueue(i % 2 ? c : other, entry(wabaId, i))).seq),
    );
    expect(new Set(seqs).size).toBe(30);
    expect([...seqs].sort((a, b) => a - b)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    const again = await enqueue(c, entry(wabaId, 7));
    expect(again.seq).toBe(seqs[7]);
    expect(await countQueued(c, wabaId)).toBe(30);
  });

  it('settles 150 entries in one go (more statements than a FerretDB update command survives) without hanging', async () => {
    const wabaId = 'w' + randomBytes(4).toString('hex');
    for (let i = 0; i < 150; i++) await enqueue(c, entry(wabaId, i));
    const { entries: page } = await nextEntries(c, wabaId, undefined, 500);
    await c.messages.insertMany(
      page.map((e) => ({
        _id: e.messageId,
        wabaId,
        phoneNumberId: '1',
        to: e.to,
        content: e.content,
        status: 'queued' as const,
        acceptedAt: '',
        updatedAt: '',
        attempts: 0,
      })),
    );
    const at = new Date().toISOString();
    await recordSettlements(
      c,
      page.map((e) => ({
        messageId: e.messageId,
        queueId: e._id,
        status: 'sent' as const,
        wamid: `wamid.${e.seq}`,
        at,
      })),
    );
    expect(await countQueued(c, wabaId)).toBe(0);
    expect(await c.settlements.countDocuments({ _id: { $in: page.map((e) => e.messageId) }, status: 'sent' })).toBe(
      150,
    );
  });
  const settle = (entries: { messageId: string; _id: string }[]) =>
    recordSettlements(
      c,
      entries.map((e) => ({ messageId: e.messageId, queueId: e._id, status: 'sent' as const, at: 'now' })),
    );
  const mark = (wabaId: string, lane: 'main' | 'front', which: 'head' | 'tail') =>
    c.queueMarks.findOne({ _id: wabaId }).then((d) => d?.[`${lane}${which === 'head' ? 'Head' : 'Tail'}`] ?? 0);

  it('never reuses a position when the tail hint lags (two processes raised it at once), and readers look past it', async () => {
    const wabaId = 'w' + randomBytes(4).toString('hex');
    for (let i = 1; i <= 4; i++) await enqueue(c, entry(wabaId, i));
    // FerretDB's `$max` reads, then writes: a lost raise leaves the hint behind the last claims.
    await c.queueMarks.updateOne({ _id: wabaId }, { $set: { mainTail: 1 } });
    const { entries } = await nextEntries(c, wabaId, undefined, 100);
    expect(entries.map((e) => e.seq)).toEqual([1, 2, 3, 4]);
    // The drain sends 1..4 and they leave; then a process whose hint says 1 queues.
    await settle(entries);
    const fifth = await enqueue(c, entry(wabaId, 5));
    expect(fifth.seq).toBe(5); // positions 2..4 are claimed for good: not given again
    expect((await nextEntries(c, wabaId, undefined, 100)).entries.map((e) => e.messageId)).toEqual([`${wabaId}-m5`]);
    expect(await mark(wabaId, 'main', 'tail')).toBe(5);
  });

  it('advances the head past what left, stops at a live entry, and walks only from there', async () => {
    const wabaId = 'w' + randomBytes(4).toString('hex');
    for (let i = 1; i <= 6; i++) await enqueue(c, entry(wabaId, i));
    const { entries } = await nextEntries(c, wabaId, undefined, 3);
    await settle(entries); // 1..3 sent
    await advanceHead(c, wabaId);
    expect(await mark(wabaId, 'main', 'head')).toBe(3);
    // Entries under the head are never read again: one put back under it stays unseen.
    await c.queue.insertOne({ ...entries[0]!, messageId: 'ghost' });
    expect((await nextEntries(c, wabaId, undefined, 100)).entries.map((e) => e.seq)).toEqual([4, 5, 6]);
    expect(await countQueued(c, wabaId)).toBe(3);
  });

  it('advances the head past the entries the drain says it removed, without evidence from the store', async () => {
    const wabaId = 'w' + randomBytes(4).toString('hex');
    for (let i = 1; i <= 3; i++) await enqueue(c, entry(wabaId, i));
    const { entries } = await nextEntries(c, wabaId, undefined, 2);
    // Removed without settlements: for the store alone these are fresh claims whose entry may still come.
    await c.queue.deleteMany({ _id: { $in: entries.map((e) => e._id) } });
    await advanceHead(c, wabaId);
    expect(await mark(wabaId, 'main', 'head')).toBe(0);
    await advanceHead(c, wabaId, new Set(entries.map((e) => e._id)));
    expect(await mark(wabaId, 'main', 'head')).toBe(2);
  });

  it('closes an abandoned claim with a tombstone, waits for a fresh one, and a late entry cannot land under the head', async () => {
    const wabaId = 'w' + randomBytes(4).toString('hex');
    await enqueue(c, entry(wabaId, 1));
    // A process took position 2 and died before inserting its entry; position 3 followed.
    const claim = { _id: queueEntryId(wabaId, 2), wabaId, messageId: `${wabaId}-m2`, storedAt: new Date() };
    await c.queueClaims.insertOne(claim);
    await enqueue(c, entry(wabaId, 3));
    const first = await nextEntries(c, wabaId, undefined, 100);
    expect(first.entries.map((e) => e.seq)).toEqual([1, 3]);
    await settle(first.entries);
    await advanceHead(c, wabaId);
    expect(await mark(wabaId, 'main', 'head')).toBe(1); // the claim is fresh: its entry may still come
    await c.queueClaims.updateOne(
      { _id: claim._id },
      { $set: { storedAt: new Date(Date.now() - ABANDONED_CLAIM_MS - 1_000) } },
    );
    await advanceHead(c, wabaId);
    expect(await mark(wabaId, 'main', 'head')).toBe(3);
    // The dead process's insert now fails on the tombstone: nothing lands where no one reads.
    await expect(c.queue.insertOne({ _id: claim._id, seq: 2, ...entry(wabaId, 2) })).rejects.toMatchObject({
      code: 11000,
    });
    expect(await countQueued(c, wabaId)).toBe(0);
    expect((await enqueue(c, entry(wabaId, 4))).seq).toBe(4);
  });

  it('sends the front lane first, in acceptance order, and answers isQueued by the entry id', async () => {
    const wabaId = 'w' + randomBytes(4).toString('hex');
    const main = await enqueue(c, entry(wabaId, 1));
    await enqueueFront(c, { ...entry(wabaId, 9), round: 2, acceptedAt: '2026-01-02T00:00:00.000Z' });
    const early = await enqueueFront(c, { ...entry(wabaId, 8), round: 2, acceptedAt: '2026-01-01T00:00:00.000Z' });
    expect(early.id).toBe(frontEntryId(wabaId, 2));
    // Idempotent per message.
    expect((await enqueueFront(c, { ...entry(wabaId, 8), round: 2, acceptedAt: 'x' })).id).toBe(early.id);
    const page = await nextEntries(c, wabaId, undefined, 2);
    expect(page.entries.map((e) => e.messageId)).toEqual([`${wabaId}-m8`, `${wabaId}-m9`]);
    const rest = await nextEntries(c, wabaId, page.cursor, 10);
    expect(rest.entries.map((e) => e.messageId)).toEqual([`${wabaId}-m1`]);
    expect(await isQueued(c, `${wabaId}-m1`, main.id)).toBe(true);
    await settle(rest.entries);
    expect(await isQueued(c, `${wabaId}-m1`, main.id)).toBe(false);
    expect(await countQueued(c, wabaId)).toBe(2);
  });

  /** The `find` commands `fn` sends through a client of its own, by collection. */
  async function readsOf(fn: (mc: Collections) => Promise<unknown>): Promise<Record<string, number>> {
    const monitored = new Client(process.env.MONGODB_URI!, { monitorCommands: true });
    await monitored.connect();
    const reads: Record<string, number> = {};
    monitored.on('commandStarted', (e) => {
      if (e.commandName === 'find') reads[String(e.command.find)] = (reads[String(e.command.find)] ?? 0) + 1;
    });
    try {
      await fn(collections(monitored.db(dbName)));
      return reads;
    } finally {
      await monitored.close();
    }
  }

  it('answers whether anything waits by reading up to the first live entry, in either lane', async () => {
    const wabaId = 'w' + randomBytes(4).toString('hex');
    expect(await anyQueued(c, wabaId)).toBe(false);
    // The front lane alone.
    await enqueueFront(c, { ...entry(wabaId, 0), round: 2, acceptedAt: '2026-01-01T00:00:00.000Z' });
    expect(await anyQueued(c, wabaId)).toBe(true);
    await settle((await nextEntries(c, wabaId, undefined, 100)).entries);
    expect(await anyQueued(c, wabaId)).toBe(false);
    for (let i = 1; i <= 30; i++) await enqueue(c, entry(wabaId, i));
    // The marks and the main lane's first entry: 2 reads, where a count reads every entry.
    expect(await readsOf(async (mc) => expect(await anyQueued(mc, wabaId)).toBe(true))).toEqual({
      queue_marks: 1,
      queue: 1,
    });
    expect((await readsOf((mc) => countQueued(mc, wabaId))).queue).toBeGreaterThanOrEqual(30);
    // Past a lagging tail hint too (a claim and its entry beyond it).
    await settle((await nextEntries(c, wabaId, undefined, 29)).entries);
    await advanceHead(c, wabaId);
    await c.queueMarks.updateOne({ _id: wabaId }, { $set: { mainTail: 29 } });
    expect(await anyQueued(c, wabaId)).toBe(true);
    await settle((await nextEntries(c, wabaId, undefined, 100)).entries);
    expect(await anyQueued(c, wabaId)).toBe(false);
  });

  it("says when a page reached the queue's end, and advances the head from the page's marks without reading them", async () => {
    const wabaId = 'w' + randomBytes(4).toString('hex');
    for (let i = 1; i <= 5; i++) await enqueue(c, entry(wabaId, i));
    const full = await nextEntries(c, wabaId, undefined, 5);
    expect(full.entries).toHaveLength(5);
    expect(full.end).toBe(false); // a full page: what follows is unknown
    const short = await nextEntries(c, wabaId, undefined, 10);
    expect(short.entries).toHaveLength(5);
    expect(short.end).toBe(true);
    expect(short.marks.main).toEqual({ head: 0, tail: 5 });
    await settle(short.entries);
    const removed = new Set(short.entries.map((e) => e._id));
    const reads = await readsOf((mc) => advanceHead(mc, wabaId, removed, short.marks));
    expect(reads).toEqual({});
    expect(await mark(wabaId, 'main', 'head')).toBe(5);
  });

  it('groups concurrent inserts into one collection into few commands, and fails only the caller whose document failed', async () => {
    const monitored = new Client(process.env.MONGODB_URI!, { monitorCommands: true });
    await monitored.connect();
    try {
      const gc = collections(monitored.db(dbName));
      let inserts = 0;
      monitored.on('commandStarted', (e) => {
        if (e.commandName === 'insert' && e.command.insert === 'gate_holds') inserts++;
      });
      const tag = randomBytes(4).toString('hex');
      const hold = (i: number) => ({
        _id: `${tag}-${i}`,
        eventKey: 'k',
        type: 'ACCOUNT_OFFBOARDED',
        receivedAt: 'now',
      });
      await gc.gateHolds.insertOne(hold(0)); // already there
      const results = await Promise.allSettled([
        ...Array.from({ length: 20 }, (_, i) => groupInsert(gc.gateHolds, [hold(i + 1)], false)),
        groupInsert(gc.gateHolds, [hold(0), hold(21)], true), // a duplicate it skips
        groupInsert(gc.gateHolds, [hold(0)], false), // a duplicate it must hear about
      ]);
      expect(results.slice(0, 21).every((r) => r.status === 'fulfilled')).toBe(true);
      expect(results[21]).toMatchObject({ status: 'rejected', reason: { code: 11000 } });
      expect(await gc.gateHolds.countDocuments({ _id: { $regex: `^${tag}-` } })).toBe(22);
      // The first leaves alone; the rest waited for it and went out together.
      expect(inserts).toBeLessThanOrEqual(4);
    } finally {
      await monitored.close();
    }
  });
});

/** A WABA's numbers by exact `_id` (`waba_numbers`), against the real MongoDB-wire server. */
describe('phone-number membership on the real MongoDB-wire server', () => {
  const scratch = scratchDatabase('numbers');
  const dbName = scratch.name;
  const now = new Date().toISOString();
  let c: Collections;
  beforeAll(() => {
    c = scratch.c();
  });
  const fields = (wabaId: string) => ({ wabaId, mps: 20, coexistence: true });

  it('keeps every number of 12 registered at once through two clients, once each, and follows a move', async () => {
    const waba = 'w' + randomBytes(4).toString('hex');
    const other = await connectMongo(process.env.MONGODB_URI!, dbName);
    try {
      const ids = Array.from({ length: 12 }, (_, i) => `${waba}-p${String(i).padStart(2, '0')}`);
      await Promise.all(ids.map((id, i) => registerPhoneNumber(i % 2 ? c : other.c, id, fields(waba), now)));
      // Registered again: no second slot.
      await registerPhoneNumber(c, ids[0]!, fields(waba), now);
      expect((await numbersOfWaba(c, waba)).map((d) => d._id)).toEqual(ids);
      expect(await c.wabaNumbers.countDocuments({ wabaId: waba })).toBe(12);

      // Moved to another WABA: gone from the first, listed under the second; moved back, listed again.
      const second = waba + 'b';
      await registerPhoneNumber(c, ids[3]!, fields(second), now);
      expect((await numbersOfWaba(c, waba)).map((d) => d._id)).toEqual(ids.filter((_, i) => i !== 3));
      expect((await listPhoneNumbers(c, second)).map((d) => d._id)).toEqual([ids[3]]);
      expect(await wabaHasNumbers(c, second)).toBe(true);
      await registerPhoneNumber(c, ids[3]!, fields(waba), now);
      expect((await numbersOfWaba(c, waba)).map((d) => d._id)).toEqual(ids);
      expect(await wabaHasNumbers(c, second)).toBe(false);
    } finally {
      await other.client.close();
    }
  });

  it('reads 2 membership slots for a WABA with one number (the gate probe lists it for every paused WABA)', async () => {
    const waba = 'w' + randomBytes(4).toString('hex');
    await registerPhoneNumber(c, `${waba}-p0`, fields(waba), now);
    let reads = 0;
    const counting = {
      ...c,
      wabaNumbers: withMethod(c.wabaNumbers, 'findOne', (findOne, ...a) => {
        reads++;
        return findOne(...a);
      }),
    } as Collections;
    expect((await numbersOfWaba(counting, waba)).map((d) => d._id)).toEqual([`${waba}-p0`]);
    // Slot 0 and slot 1 (free: the list ends). Read 8 at a time, it was 8.
    expect(reads).toBe(2);
  });
});

describe('the WABA document on the real MongoDB-wire server', () => {
  const scratch = scratchDatabase('wabas');
  let c: Collections;
  beforeAll(() => {
    c = scratch.c();
  });

  it('never lets an earlier revision overwrite a later one (a local activity run again after a failed workflow task)', async () => {
    const wabaId = `w${randomBytes(4).toString('hex')}`;
    const at = new Date().toISOString();
    const snap = (state: 'draining' | 'connected' | 'offboarded', rev?: number) => ({
      wabaId,
      state,
      since: at,
      escalationLevel: 0,
      events: [],
      updatedAt: at,
      ...(rev === undefined ? {} : { rev }),
    });
    await saveWaba(c, snap('offboarded')); // a document from before revisions
    await saveWaba(c, snap('draining', 1));
    await saveWaba(c, snap('connected', 2));
    await saveWaba(c, snap('draining', 1)); // re-run: stale
    expect(await findWaba(c, wabaId)).toMatchObject({ state: 'connected', rev: 2 });
    await saveWaba(c, snap('connected', 2)); // re-run: the same revision, nothing to do
    expect(await findWaba(c, wabaId)).toMatchObject({ state: 'connected', rev: 2 });
    await saveWaba(c, snap('offboarded', 3));
    expect(await findWaba(c, wabaId)).toMatchObject({ state: 'offboarded', rev: 3 });
    expect(await c.wabas.countDocuments({ _id: wabaId })).toBe(1);
  });
});
