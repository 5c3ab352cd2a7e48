import { randomBytes } from 'node:crypto';
import { MongoClient, type Db } from 'mongodb';
import { loadConfig, type RetentionSettings } from '../../src/config';
import { collections, connectMongo, type Collections } from '../../src/adapters/store/db';
import { recordStatuses } from '../../src/sending/statuses.store';
import {
  claimDelivery,
  deliveryHandedOver,
  recordAccountEvents,
  recordDelivery,
} from '../../src/lifecycle/outbox.store';
import { forwardDelivered, forwardId } from '../../src/relay/forwards.store';
import { claimIdempotencyKey, insertMessage } from '../../src/sending/messages.store';
import { recordSettlements } from '../../src/sending/queue.store';
import {
  ensureRetentionIndexes,
  purgeExpired,
  SPENT_AFTER_MS,
  startRetention,
} from '../../src/adapters/store/retention';
import { claimPost, insertAttempt, insertConfirmation } from '../../src/sending/attempts.store';
import { claimSlot, recordPause } from '../../src/sending/slots.store';
import { createLogger } from '../../src/logger';

/** Retention on the real MongoDB-wire server (FerretDB here: no TTL, so the purge does the work). */
describe('retention on the real MongoDB-wire server', () => {
  let client: MongoClient;
  let db: Db;
  let c: Collections;
  const dbName = `retention_${randomBytes(4).toString('hex')}`;
  // Windows in seconds, as RETENTION_* would give them.
  const retention: RetentionSettings = {
    messagesMs: 2_000,
    statusesMs: 2_000,
    accountEventsMs: 4_000,
    idempotencyMs: 1_000,
    deliveriesMs: 2_000,
    purgeIntervalMs: 10_000,
    purgeBatch: 3,
  };

  beforeAll(async () => {
    ({ client, db, c } = await connectMongo(process.env.MONGODB_URI!, dbName));
  });
  afterAll(async () => {
    await db.dropDatabase().catch(() => undefined);
    await client.close();
  });

  /** One record of each kind, written through the store's own writers. */
  async function writeRecords(tag: string): Promise<void> {
    const at = new Date().toISOString();
    await insertMessage(c, {
      _id: `m-${tag}`,
      wabaId: '1',
      phoneNumberId: '2',
      to: '15550000000',
      content: { type: 'text', text: { body: tag } },
      status: 'accepted',
      acceptedAt: at,
      updatedAt: at,
      attempts: 0,
    });
    await recordSettlements(c, [{ messageId: `m-${tag}`, status: 'sent', wamid: `wamid.${tag}`, at }]);
    await recordStatuses(c, [
      {
        _id: `wamid.${tag}:sent`,
        wamid: `wamid.${tag}`,
        status: 'sent',
        wabaId: '1',
        phoneNumberId: '2',
        receivedAt: at,
      },
    ]);
    await recordAccountEvents(c, [
      {
        _id: `e-${tag}`,
        wabaId: '1',
        event: 'ACCOUNT_OFFBOARDED',
        entryId: '1',
        raw: '{}',
        receivedAt: at,
        outcome: 'recorded',
      },
    ]);
    await claimIdempotencyKey(c, { _id: `k:${tag}`, messageId: `m-${tag}`, requestHash: 'h', createdAt: at });
    // The send ledger of the message: its entry, a status's confirmation, the claim of a second POST.
    await insertAttempt(c, {
      _id: `m-${tag}`,
      messageId: `m-${tag}`,
      tries: 1,
      state: 'in_flight',
      startedAt: 0,
      resends: 0,
    });
    await insertConfirmation(c, { _id: `m-${tag}`, wamid: `wamid.${tag}`, status: 'sent', at });
    await claimPost(c, `m-${tag}`, 2);
    // A late failure of the message (kept as long as messages).
    await c.lateFailures.insertOne({
      _id: `m-${tag}`,
      wabaId: '1',
      wamid: `wamid.${tag}`,
      code: 131031,
      failedAt: at,
      requeuedAt: at,
      storedAt: new Date(),
    });
    // A queue position's claim (kept as long as messages), a tombstone closing another one (the
    // same), and a live entry (never purged: it has no `storedAt`).
    await c.queueClaims.insertOne({ _id: `q-${tag}`, wabaId: '1', messageId: `m-${tag}`, storedAt: new Date() });
    const queued = {
      wabaId: `w-${tag}`, // (wabaId, seq) is unique
      phoneNumberId: '1',
      to: '1',
      content: { type: 'text' as const, text: { body: '' } },
      enqueuedAt: at,
      notify: false,
    };
    await c.queue.insertOne({ _id: `q-${tag}`, seq: 1, messageId: `live-${tag}`, ...queued });
    await c.queue.insertOne({
      _id: `t-${tag}`,
      seq: 2,
      messageId: `~closed:t-${tag}`,
      ...queued,
      tombstone: true,
      storedAt: new Date(),
    });
    // A delivery forwarded to its one target (logged in `forwarded`, bytes and all) and handed over
    // by the relay (deleted from the outbox at once).
    const d = `d-${tag}`;
    const raw = Buffer.from(`{"tag":"${tag}"}`).toString('base64');
    await recordDelivery(c, {
      _id: d,
      kind: 'meta_delivery',
      receivedAt: at,
      raw,
      events: [],
      audit: '[]',
      auditCount: 0,
      wabaIds: ['1'],
    });
    const entry = { target: 't', deliveryId: d, wabaIds: ['1'], receivedAt: at, state: 'pending' as const };
    await forwardDelivered(
      c,
      {
        _id: forwardId('t', d),
        ...entry,
        kind: 'meta_delivery',
        raw,
        attempts: 0,
        nextAt: 0,
        pendingSince: Date.parse(at),
      },
      { attempts: 1, status: 200, at },
    );
    await deliveryHandedOver(c, d);
  }

  const ids = async () => ({
    messages: (await c.messages.find({}).toArray()).map((d) => d._id).sort(),
    settlements: (await c.settlements.find({}).toArray()).map((d) => d._id).sort(),
    lateFailures: (await c.lateFailures.find({}).toArray()).map((d) => d._id).sort(),
    statuses: (await c.messageStatuses.find({}).toArray()).map((d) => d._id).sort(),
    events: (await c.accountEvents.find({}).toArray()).map((d) => d._id).sort(),
    idempotency: (await c.idempotency.find({}).toArray()).map((d) => d._id).sort(),
    forwarded: (await c.forwarded.find({}).toArray()).map((d) => d._id).sort(),
    outbox: (await c.outbox.find({}).toArray()).map((d) => d._id).sort(),
    claims: (await c.queueClaims.find({}).toArray()).map((d) => d._id).sort(),
    queue: (await c.queue.find({}).toArray()).map((d) => d._id).sort(),
    attempts: (await c.sendAttempts.find({}).toArray()).map((d) => d._id).sort(),
    confirmations: (await c.sendConfirmations.find({}).toArray()).map((d) => d._id).sort(),
    sendClaims: (await c.sendClaims.find({}).toArray()).map((d) => d._id).sort(),
  });

  it('ensures TTL indexes on MongoDB, or on FerretDB (no TTL) leaves it to the purge; twice is a no-op', async () => {
    const mode = await ensureRetentionIndexes(db, c, retention);
    expect(await ensureRetentionIndexes(db, c, retention)).toBe(mode);
    const names = (await c.messages.indexes()).map((i) => i.name);
    if (mode === 'ttl') expect(names).toContain('storedAt_ttl');
    else expect(names).not.toContain('storedAt_ttl');
  });

  it('purges documents older than their window, in bounded batches, and keeps recent ones', async () => {
    for (const tag of ['old1', 'old2', 'old3', 'old4']) await writeRecords(tag);
    await new Promise((r) => setTimeout(r, 2_300)); // past messages / statuses (2 s) and idempotency (1 s)
    await writeRecords('new');

    // A batch of 3: the first round leaves one old document per collection.
    const first = await purgeExpired(c, retention);
    const batch = (n: number) => ({
      messages: n,
      settlements: n,
      late_failures: n,
      queue_claims: n,
      queue: n,
      send_attempts: n,
      send_confirmations: n,
      send_claims: n,
      message_statuses: n,
      account_events: 0,
      idempotency: n,
      forwarded: n,
      send_slots: 0,
      send_pauses: 0,
      outbox_claims: 0,
    });
    expect(first).toEqual(batch(3));
    const second = await purgeExpired(c, retention);
    expect(second).toEqual(batch(1));
    expect(await ids()).toEqual({
      messages: ['m-new'],
      settlements: ['m-new'],
      lateFailures: ['m-new'],
      statuses: ['wamid.new:sent'],
      // Account events keep 4 s: all five are still there.
      events: ['e-new', 'e-old1', 'e-old2', 'e-old3', 'e-old4'],
      idempotency: ['k:new'],
      forwarded: ['t:d-new'],
      outbox: [], // a delivery leaves the outbox once handed over
      claims: ['q-new'],
      // Live entries stay whatever their age; only the recent tombstone is left.
      queue: ['q-new', 'q-old1', 'q-old2', 'q-old3', 'q-old4', 't-new'],
      attempts: ['m-new'],
      confirmations: ['m-new'],
      sendClaims: ['m-new/2'],
    });
    // A collection whose retention is off is never purged.
    const later = new Date(Date.now() + 10_000);
    expect(await purgeExpired(c, { ...retention, accountEventsMs: undefined }, later)).toEqual({
      messages: 1,
      settlements: 1,
      late_failures: 1,
      queue_claims: 1,
      queue: 1,
      send_attempts: 1,
      send_confirmations: 1,
      send_claims: 1,
      message_statuses: 1,
      idempotency: 1,
      forwarded: 1,
      send_slots: 0,
      send_pauses: 0,
      outbox_claims: 0,
    });
    expect((await ids()).events).toHaveLength(5);
  });

  it('purges spent pacing state and outbox lease claims on its own clock, one delete statement per collection, and keeps what may still be read', async () => {
    const now = Date.now();
    const spent = now - SPENT_AFTER_MS - 1_000;
    // Slots a dead worker left behind, and one still running; pauses of recipients never messaged again, and a recent one.
    for (let k = 0; k < 5; k++) await claimSlot(c, `9:${k}`, spent - k);
    await claimSlot(c, '9:live', now + 1_000);
    for (let i = 0; i < 5; i++) await recordPause(c, `9>1555000000${i}`, spent, spent - 1_000);
    await recordPause(c, '9>15550009999', now - 1_000, now - 2_000);
    // Outbox lease claims whose leases ended, and the current lease of a delivery still pending.
    for (let lease = 0; lease < 2; lease++) await claimDelivery(c, 'd-spent', lease, 'r', spent - 1_000 + lease);
    await claimDelivery(c, 'd-pending', 3, 'r', now + 30_000);
    // Counted on a client of its own that reports every command it sends.
    const watched = new MongoClient(process.env.MONGODB_URI!, { monitorCommands: true });
    const deletes: { collection: string; statements: number }[] = [];
    watched.on('commandStarted', (e) => {
      const cmd = e.command as { delete?: string; deletes?: unknown[] };
      if (e.commandName === 'delete') deletes.push({ collection: cmd.delete!, statements: cmd.deletes!.length });
    });
    try {
      const purged = await purgeExpired(collections(watched.db(dbName)), { purgeIntervalMs: 10_000, purgeBatch: 3 });
      expect(purged).toEqual({ send_slots: 5, send_pauses: 5, outbox_claims: 2 });
    } finally {
      await watched.close();
    }
    expect(deletes).toEqual([
      { collection: 'send_slots', statements: 1 },
      { collection: 'send_pauses', statements: 1 },
      { collection: 'outbox_claims', statements: 1 },
    ]);
    expect((await c.sendSlots.find({}).toArray()).map((d) => d._id)).toEqual(['9:live']);
    expect((await c.sendPauses.find({}).toArray()).map((d) => d.key)).toEqual(['9>15550009999']);
    expect((await c.outboxClaims.find({}).toArray()).map((d) => d._id)).toEqual(['d-pending:3']);
  });

  it('the worker’s loop purges on its interval and reports what it deleted', async () => {
    await writeRecords('loop');
    const purged: Record<string, number> = {};
    const loop = startRetention({
      db,
      c,
      retention: { ...retention, messagesMs: 1_000, statusesMs: 1_000, purgeIntervalMs: 1_500, purgeBatch: 100 },
      logger: createLogger('silent'),
      onPurged: (collection, n) => (purged[collection] = (purged[collection] ?? 0) + n),
    });
    try {
      await new Promise((r) => setTimeout(r, 2_500));
    } finally {
      await loop.stop();
    }
    expect(purged).toMatchObject({ messages: 1, settlements: 1, message_statuses: 1, idempotency: 1 });
    expect((await ids()).messages).toEqual([]);
  });

  it('reads the windows from RETENTION_* (seconds work for tests like this one)', () => {
    const config = loadConfig({
      META_APP_SECRET: 's',
      META_VERIFY_TOKEN: 't',
      OPS_API_KEYS: 'o',
      SEND_API_KEYS: 'k',
      TEMPORAL_ADDRESS: 'x:1',
      MONGODB_URI: 'mongodb://x/',
      GRAPH_API_TOKEN: 'g',
      ESCALATION_LEVELS: '1s,2s,3s',
      RETENTION_MESSAGES: '5s',
      RETENTION_IDEMPOTENCY: '2s',
    });
    expect(config.retention).toMatchObject({ messagesMs: 5_000, idempotencyMs: 2_000 });
  });
});
