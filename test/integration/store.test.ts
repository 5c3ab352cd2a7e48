import { randomBytes } from 'node:crypto';
import type { MongoClient } from 'mongodb';
import { connectMongo, type Collections } from '../../src/adapters/store/db';
import {
  countQueued,
  enqueue,
  nextEntries,
  recordSettlements,
  type NewQueueEntry,
} from '../../src/adapters/store/queue';

/** The queue store against the real MongoDB-wire server (FerretDB in tests). */
describe('queue store on the real MongoDB-wire server', () => {
  let client: MongoClient;
  let c: Collections;
  const dbName = `store_${randomBytes(4).toString('hex')}`;
  beforeAll(async () => {
    const conn = await connectMongo(process.env.MONGODB_URI!, dbName);
    client = conn.client;
    c = conn.c;
  });
  afterAll(async () => {
    await client
      .db(dbName)
      .dropDatabase()
      .catch(() => undefined);
    await client.close();
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
      const sent = await nextEntries(c, wabaId, undefined, 5); // the drain settles 1..5
      await recordSettlements(
        c,
        sent.map((e) => ({ messageId: e.messageId, queueId: e._id, status: 'sent' as const, at: 'now' })),
      );
      const seq = await enqueue(c, entry(wabaId, 11)); // accepted last: must leave last
      expect(seq).toBe(11);
      const rest = await nextEntries(c, wabaId, undefined, 100);
      expect(rest.map((e) => e.messageId)).toEqual([6, 7, 8, 9, 10, 11].map((i) => `${wabaId}-m${i}`));
    } finally {
      await other.client.close();
    }
  });

  it('gives concurrent senders distinct, gap-free sequence numbers and never queues a message twice', async () => {
    const wabaId = 'w' + randomBytes(4).toString('hex');
    // Two "processes" (separate handles, so separate tail caches) racing.
    const other = { ...c };
    const seqs = await Promise.all(Array.from({ length: 30 }, (_, i) => enqueue(i % 2 ? c : other, entry(wabaId, i))));
    expect(new Set(seqs).size).toBe(30);
    expect([...seqs].sort((a, b) => a - b)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    const again = await enqueue(c, entry(wabaId, 7));
    expect(again).toBe(seqs[7]);
    expect(await countQueued(c, wabaId)).toBe(30);
  });

  it('settles 150 entries in one go (more statements than a FerretDB update command survives) without hanging', async () => {
    const wabaId = 'w' + randomBytes(4).toString('hex');
    for (let i = 0; i < 150; i++) await enqueue(c, entry(wabaId, i));
    const page = await nextEntries(c, wabaId, undefined, 500);
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
});
