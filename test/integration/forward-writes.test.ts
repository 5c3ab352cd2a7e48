import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { MongoClient, type Db } from 'mongodb';
import { collections, ensureIndexes, type Collections } from '../../src/adapters/store/db';
import { parseWebhookBody } from '../../src/adapters/meta/webhook-payload';
import { signBody } from '../../src/adapters/meta/signature';
import { createWebhookSink } from '../../src/lifecycle/ingest';
import { createLogger } from '../../src/logger';
import { startForwarder } from '../../src/relay/forwarder';
import { replayDeliveries } from '../../src/lifecycle/outbox.store';
import { endpoint } from '../support/receiver';
import { eventually } from '../support/stack';

/**
 * What forwarding a delivery without lifecycle events writes (issue #20: a forwarded status webhook
 * within a budget of write statements): the sink's status insert and the target's `forwards` entry,
 * holding the bytes itself; then the forwarder's `forwarded` row (the archive replay reads) and the
 * entry's delete. No outbox record, lease claim, relay flag or archive insert. Counted as the cost
 * meter counts (each document of an insert, each statement of an update or delete) on a client that
 * reports every command, with the sink and a forwarder of the test's own on the real MongoDB-wire server.
 */
describe('forwarding a status webhook: four write statements, nothing through the outbox', () => {
  let client: MongoClient;
  let db: Db;
  let c: Collections;
  const dbName = `forward_writes_${randomBytes(4).toString('hex')}`;
  const writes: string[] = [];
  let counting = false;

  beforeAll(async () => {
    client = new MongoClient(process.env.MONGODB_URI!, { monitorCommands: true });
    client.on('commandStarted', (e) => {
      if (!counting) return;
      const cmd = e.command as Record<string, unknown>;
      const n = (list: unknown): number => (Array.isArray(list) ? list.length : 0);
      if (e.commandName === 'insert') writes.push(...Array<string>(n(cmd.documents)).fill(`insert ${cmd.insert}`));
      if (e.commandName === 'update') writes.push(...Array<string>(n(cmd.updates)).fill(`update ${cmd.update}`));
      if (e.commandName === 'delete') writes.push(...Array<string>(n(cmd.deletes)).fill(`delete ${cmd.delete}`));
      if (e.commandName === 'findAndModify') writes.push(`findAndModify ${cmd.findAndModify}`);
    });
    await client.connect();
    db = client.db(dbName);
    c = collections(db);
    await ensureIndexes(c);
  });
  afterAll(async () => {
    await db.dropDatabase().catch(() => undefined);
    await client.close();
  });

  it('writes the status, the entry with the bytes, the forwarded row and the delete; the row replays the same bytes', async () => {
    const receiver = await endpoint();
    const target = { name: 'inbox', url: receiver.url, secrets: [`whsec_${randomBytes(32).toString('base64')}`] };
    const logger = createLogger('silent');
    const sink = createWebhookSink({ c, logger, forward: [target] });
    const forwarder = startForwarder(
      { c, logger, forward: { targets: [target], maxAgeMs: 3_600_000, backlogAlertMs: 3_600_000 } },
      { pollMs: 50 },
    );
    try {
      const raw = Buffer.from(
        fs.readFileSync(path.join(__dirname, '..', 'fixtures', 'meta', 'messages_status_sent.json'), 'utf8'),
      );
      const signature = signBody(raw, 'app-secret');
      const since = new Date(Date.now() - 1_000).toISOString();
      counting = true;
      await sink.accept(parseWebhookBody(JSON.parse(raw.toString('utf8'))), { raw, signature });
      await eventually(async () => receiver.got.length >= 1 && (await c.forwards.countDocuments({})) === 0, 15_000, 50);
      counting = false;
      expect(writes.sort()).toEqual([
        'delete forwards',
        'insert forwarded',
        'insert forwards',
        'insert message_statuses',
      ]);
      expect(await c.outbox.countDocuments({})).toBe(0);
      expect(receiver.got[0]!.raw.equals(raw)).toBe(true);
      expect(receiver.got[0]!.headers['x-hub-signature-256']).toBe(signature);

      // The `forwarded` row is the archive: a replay sends the same bytes, signature and webhook-id.
      const until = new Date(Date.now() + 1_000).toISOString();
      expect(await replayDeliveries(c, { since, until, limit: 10 }, ['inbox'], Date.now())).toEqual({
        deliveries: 1,
        forwards: 1,
      });
      await eventually(async () => receiver.got.length >= 2, 15_000, 50);
      const [first, again] = receiver.got;
      expect({ id: again!.id, signature: again!.headers['x-hub-signature-256'], same: again!.raw.equals(raw) }).toEqual(
        { id: first!.id, signature, same: true },
      );
    } finally {
      await forwarder.stop();
      await receiver.stop();
    }
  });
});
