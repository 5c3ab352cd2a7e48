import { randomBytes } from 'node:crypto';
import type { Db, MongoClient } from 'mongodb';
import { connectMongo, type Collections } from '../../src/adapters/store/db';
import {
  forwardDelivered,
  forwardStats,
  pendingAgeMs,
  pendingEntries,
  retryDead,
} from '../../src/relay/forwards.store';
import { replayDeliveries } from '../../src/lifecycle/outbox.store';
import { createLogger } from '../../src/logger';
import { startForwarder } from '../../src/relay/forwarder';
import { endpoint } from '../support/receiver';
import { eventually } from '../support/stack';

const HOUR = 3_600_000;
const secret = (): string => `whsec_${randomBytes(32).toString('base64')}`;

/**
 * A forward entry waits from when it became pending: the delivery's receipt, or the moment of a
 * replay or of a retry of a dead letter. FORWARD_MAX_AGE and the backlog alert are measured on
 * that clock, so an old delivery sent again gets its full time instead of dying (or alerting) at
 * once. On the real MongoDB-wire server; a forwarder of the test's own against a receiver that is down.
 */
describe('the forward clock: replays and retries of old deliveries get their full time', () => {
  let client: MongoClient;
  let db: Db;
  let c: Collections;
  const dbName = `forward_clock_${randomBytes(4).toString('hex')}`;

  beforeAll(async () => {
    ({ client, db, c } = await connectMongo(process.env.MONGODB_URI!, dbName));
  });
  afterAll(async () => {
    await db.dropDatabase().catch(() => undefined);
    await client.close();
  });

  /** A delivery received `agoMs` ago and forwarded to `targets` (in `forwarded`, nothing left pending). */
  async function archived(id: string, agoMs: number, targets: string[]): Promise<void> {
    const delivery = {
      _id: id,
      kind: 'meta_delivery' as const,
      receivedAt: new Date(Date.now() - agoMs).toISOString(),
      raw: Buffer.from(`{"id":"${id}"}`).toString('base64'),
    };
    for (const entry of pendingEntries(delivery, targets, ['1001']))
      await forwardDelivered(c, entry, { attempts: 1, status: 200, at: new Date().toISOString() });
  }

  it('a replay waits from now, and only for the targets still configured', async () => {
    await archived('d-replay', 2 * HOUR, ['t', 'gone']);
    const now = Date.now();
    const since = new Date(now - 3 * HOUR).toISOString();
    const until = new Date(now).toISOString();
    // 'gone' was removed from FORWARD_TARGETS: no forwarder would ever take its entry.
    expect(await replayDeliveries(c, { since, until, limit: 10 }, ['t'], now)).toEqual({ deliveries: 1, forwards: 1 });
    const entries = await c.forwards.find({ deliveryId: 'd-replay' }).toArray();
    expect(entries.map((e) => e.target)).toEqual(['t']);
    expect(pendingAgeMs(entries[0]!, Date.now())).toBeLessThan(60_000);
    expect((await forwardStats(c, Date.now())).longestPendingMs.t).toBeLessThan(60_000);
    // A range whose deliveries go only to removed targets replays nothing.
    await archived('d-gone', 2 * HOUR, ['gone']);
    const r = await replayDeliveries(c, { since, until, limit: 10, wabaId: '1001' }, ['other'], now);
    expect(r).toEqual({ deliveries: 0, forwards: 0 });
    await c.forwards.deleteMany({});
  });

  it('a new entry waits from the receipt; a retried dead letter from the retry', async () => {
    const [entry] = pendingEntries(
      { _id: 'd-dead', kind: 'meta_delivery', receivedAt: new Date(Date.now() - 2 * HOUR).toISOString(), raw: '' },
      ['t'],
      [],
    );
    await c.forwards.insertOne({ ...entry!, state: 'dead', attempts: 9 });
    const before = (await c.forwards.findOne({ _id: 't:d-dead' }))!;
    expect(pendingAgeMs(before, Date.now())).toBeGreaterThan(HOUR); // a new entry: from the receipt
    expect(await retryDead(c, 'd-dead', 't', Date.now())).toBe(1);
    const after = (await c.forwards.findOne({ _id: 't:d-dead' }))!;
    expect(pendingAgeMs(after, Date.now())).toBeLessThan(60_000);
    await c.forwards.deleteMany({});
  });

  it('a forwarder does not dead-letter a replayed delivery older than FORWARD_MAX_AGE on its first failure', async () => {
    const down = await endpoint();
    down.state.down = true;
    await archived('d-old', 2 * HOUR, ['t']);
    const now = Date.now();
    await replayDeliveries(
      c,
      { since: new Date(now - 3 * HOUR).toISOString(), until: new Date(now).toISOString(), limit: 10 },
      ['t'],
      now,
    );
    const forwarder = startForwarder(
      {
        c,
        logger: createLogger('silent'),
        forward: { targets: [{ name: 't', url: down.url, secrets: [secret()] }], maxAgeMs: HOUR, backlogAlertMs: HOUR },
      },
      { pollMs: 100 },
    );
    try {
      await eventually(async () => ((await c.forwards.findOne({ _id: 't:d-old' }))?.attempts ?? 0) >= 1, 10_000, 50);
      const entry = (await c.forwards.findOne({ _id: 't:d-old' }))!;
      expect({ state: entry.state, lastError: entry.lastError }).toEqual({ state: 'pending', lastError: 'HTTP 503' });
    } finally {
      await forwarder.stop();
      await down.stop();
    }
  });
});
