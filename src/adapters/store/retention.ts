import { MongoServerError, type Collection, type Db, type Document } from 'mongodb';
import type { RetentionSettings } from '../../config';
import type { Logger } from '../../logger';
import { deleteByIds, type Collections } from './db';

/**
 * Retention: how long each record collection keeps its documents, counted from `storedAt` (a BSON
 * Date the store sets on insert; a document without one is kept: the queue's live entries).
 *
 * - MongoDB: a TTL index per collection (`storedAt`, `expireAfterSeconds` = the window), created
 *   or, when the window changed, updated with `collMod` by `ensureRetentionIndexes` at worker start.
 * - FerretDB (no TTL indexes; v1.24 refuses `expireAfterSeconds` as not implemented): `purgeExpired`, run by
 *   the worker every `RETENTION_PURGE_INTERVAL`. Each round reads at most `RETENTION_PURGE_BATCH`
 *   expired `_id`s per collection (one scan) and deletes them by exact `_id` (the indexed filter), in
 *   statements of at most 50; on MongoDB the same round finds what the TTL monitor has not yet
 *   removed (an index range) and costs little.
 *
 * `wabas`, `phone_numbers`, `waba_numbers`, `queue_marks` and the queue's live entries hold live state and are never
 * purged (the queue's tombstones and `queue_claims` are, with the messages; so are the send ledger's
 * `send_attempts`, `send_confirmations` and `send_claims`).
 *
 * Spent pacing state is purged in the same round on every store, whatever the windows: slots past
 * their end (the pacer leaves them: nobody claims a slot that has started, and a delete per slot
 * was two write statements per send) and pauses that ended (a pause is deleted by the next reader
 * of its key, so one of a recipient never messaged again stayed for good). Pauses are read by range
 * on every reservation, which FerretDB answers by scanning the collection; slots are never read (a
 * claim is an insert, checked by the unique index). The purge keeps both at what the last
 * `SPENT_AFTER_MS` + one interval produced (slots: two per send, so at the default 5 minutes and a
 * number sending 20 msg/s, about 14,400). The outbox relay's spent lease claims go the same way
 * (one per lifecycle or forwarded delivery, never read). One filtered `deleteMany` each: one
 * statement (one commit on FerretDB), where a delete by `_id` costs one per document. The windowed
 * collections keep the delete by `_id`: their expired documents are the oldest, first in a scan
 * that stops at the batch, while a filtered delete scans the whole collection twice on FerretDB
 * (measured at 20,000 documents, 500 expired: 0.65 s by `_id`, 2.2 s by `$in`, 2.9 s by a sorted
 * `_id` range).
 */

/**
 * How long after its end a slot, a pause or an outbox lease claim is spent (slots and claims:
 * beyond any process's clock skew; pauses: `readPauses`'s keep).
 */
export const SPENT_AFTER_MS = 60_000;

/** One retained collection and its window. */
interface Target {
  name: string;
  collection: Collection<Document>;
  ms: number;
}

function targets(c: Collections, r: RetentionSettings): Target[] {
  const all: [string, Collection<Document>, number | undefined][] = [
    ['messages', c.messages as unknown as Collection<Document>, r.messagesMs],
    ['settlements', c.settlements as unknown as Collection<Document>, r.messagesMs],
    ['late_failures', c.lateFailures as unknown as Collection<Document>, r.messagesMs],
    ['queue_claims', c.queueClaims as unknown as Collection<Document>, r.messagesMs],
    // Only the queue's tombstones carry `storedAt`: live entries are never purged.
    ['queue', c.queue as unknown as Collection<Document>, r.messagesMs],
    ['send_attempts', c.sendAttempts as unknown as Collection<Document>, r.messagesMs],
    ['send_confirmations', c.sendConfirmations as unknown as Collection<Document>, r.messagesMs],
    ['send_claims', c.sendClaims as unknown as Collection<Document>, r.messagesMs],
    ['message_statuses', c.messageStatuses as unknown as Collection<Document>, r.statusesMs],
    ['account_events', c.accountEvents as unknown as Collection<Document>, r.accountEventsMs],
    ['idempotency', c.idempotency as unknown as Collection<Document>, r.idempotencyMs],
    ['forwarded', c.forwarded as unknown as Collection<Document>, r.deliveriesMs],
  ];
  return all.flatMap(([name, collection, ms]) => (ms ? [{ name, collection, ms }] : []));
}

/**
 * Spent state: the collection and the field (epoch ms) that says when each document ended. Also the
 * outbox relay's lease claims: nobody claims a lease that has ended, and deleting each claim with
 * its delivery was a write statement per lifecycle webhook.
 */
const SPENT: { name: string; field: string; of: (c: Collections) => Collection<Document> }[] = [
  { name: 'send_slots', field: 'expiresAt', of: (c) => c.sendSlots as unknown as Collection<Document> },
  { name: 'send_pauses', field: 'until', of: (c) => c.sendPauses as unknown as Collection<Document> },
  { name: 'outbox_claims', field: 'expiresAt', of: (c) => c.outboxClaims as unknown as Collection<Document> },
];

const TTL_INDEX = 'storedAt_ttl';

/** MongoDB's code for "an index of that name exists with other options". */
const INDEX_OPTIONS_CONFLICT = [85, 86];

/** MongoDB's NotImplemented: FerretDB's answer to `expireAfterSeconds`. */
const NOT_IMPLEMENTED = 238;

const notImplemented = (err: unknown): boolean =>
  err instanceof MongoServerError &&
  (err.code === NOT_IMPLEMENTED || /expireAfterSeconds.*not implemented/i.test(err.message));

/**
 * Creates (or retunes) the TTL index of every retained collection. Idempotent. Returns `ttl` when
 * the store expires documents itself (MongoDB), `purge` when it has no TTL indexes (FerretDB:
 * no index is created, since FerretDB would not use one for the purge's filter; `purgeExpired` does
 * the work). A collection
 * whose retention is off keeps any TTL index it had until an operator drops it.
 */
export async function ensureRetentionIndexes(
  db: Db,
  c: Collections,
  retention: RetentionSettings,
  logger?: Logger,
): Promise<'ttl' | 'purge'> {
  let mode: 'ttl' | 'purge' = 'ttl';
  for (const t of targets(c, retention)) {
    const expireAfterSeconds = Math.max(1, Math.round(t.ms / 1000));
    if (mode === 'purge') break;
    try {
      await t.collection.createIndex({ storedAt: 1 }, { name: TTL_INDEX, expireAfterSeconds });
    } catch (err) {
      if (notImplemented(err)) {
        mode = 'purge';
        continue;
      }
      if (!(err instanceof MongoServerError && INDEX_OPTIONS_CONFLICT.includes(Number(err.code)))) throw err;
      await db.command({ collMod: t.name, index: { name: TTL_INDEX, expireAfterSeconds } });
      logger?.info({ collection: t.name, expireAfterSeconds }, 'retention window changed');
    }
  }
  return mode;
}

/**
 * One purge round: per retained collection, at most `purgeBatch` documents whose `storedAt` is
 * older than the window, deleted by `_id`; then the spent pacing state, one statement per
 * collection. Returns the number deleted per collection.
 */
export async function purgeExpired(
  c: Collections,
  retention: RetentionSettings,
  now: Date = new Date(),
): Promise<Record<string, number>> {
  const deleted: Record<string, number> = {};
  for (const t of targets(c, retention)) {
    const cutoff = new Date(now.getTime() - t.ms);
    const expired = await t.collection
      .find({ storedAt: { $lt: cutoff } }, { projection: { _id: 1 } })
      .limit(retention.purgeBatch)
      .toArray();
    const n = await deleteByIds(
      t.collection,
      expired.map((d) => d._id),
    );
    deleted[t.name] = n;
  }
  const spentBefore = now.getTime() - SPENT_AFTER_MS;
  for (const { name, field, of } of SPENT) {
    deleted[name] = (await of(c).deleteMany({ [field]: { $lt: spentBefore } })).deletedCount;
  }
  return deleted;
}

/** The purge loop the worker runs; `stop()` waits for a round in progress. */
export interface RetentionLoop {
  stop(): Promise<void>;
}

/**
 * Ensures the TTL indexes, then runs `purgeExpired` every `purgeIntervalMs` (the first round after
 * one interval). A failed round is logged and retried at the next interval; a round that found a
 * full batch runs again at once (bounded, so a backlog after a long outage drains without a scan
 * storm: at most 10 rounds back to back).
 */
export function startRetention(deps: {
  db: Db;
  c: Collections;
  retention: RetentionSettings;
  logger: Logger;
  onPurged?: (collection: string, n: number) => void;
}): RetentionLoop {
  const { db, c, retention, logger } = deps;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let running: Promise<void> = Promise.resolve();

  const round = async (): Promise<void> => {
    for (let i = 0; i < 10 && !stopped; i++) {
      const deleted = await purgeExpired(c, retention);
      let full = false;
      for (const [collection, n] of Object.entries(deleted)) {
        if (n > 0) deps.onPurged?.(collection, n);
        // Only a windowed collection's full batch means more is left (spent state goes in one statement).
        if (n >= retention.purgeBatch && !SPENT.some((s) => s.name === collection)) full = true;
      }
      if (Object.values(deleted).some((n) => n > 0)) logger.info({ deleted }, 'retention purge');
      if (!full) break;
    }
  };
  const schedule = (): void => {
    if (stopped) return;
    timer = setTimeout(() => {
      running = round()
        .catch((err: unknown) => logger.warn({ err }, 'retention purge failed; retrying at the next interval'))
        .finally(schedule);
    }, retention.purgeIntervalMs);
    timer.unref();
  };
  running = ensureRetentionIndexes(db, c, retention, logger)
    .then((mode) => logger.debug({ mode }, mode === 'ttl' ? 'retention: TTL indexes' : 'retention: periodic purge'))
    .catch((err: unknown) => logger.warn({ err }, 'could not ensure the retention (TTL) indexes'))
    .finally(schedule);
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}
