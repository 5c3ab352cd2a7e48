import type { LifecycleEvent } from '../contracts';
import { insertForwards, pendingEntries } from '../relay/forwards.store';
import {
  groupInsert,
  insertFacts,
  isDuplicateKey,
  type AccountEventDoc,
  type Collections,
  type DeliveryBytes,
  type OutboxDoc,
} from '../adapters/store/db';

/**
 * The durable outbox (`outbox`): one document per accepted Meta delivery that carries work for
 * Temporal, inserted by the webhook sink before the 200 and deleted by the relay once every event
 * in it is handed over. It only ever holds what is pending, so finding pending work reads a small
 * collection (FerretDB scans it). The audit of what was handed over is `account_events`
 * (insert-only), which is also the relay's per-event "done" record: an event whose key is there
 * was handed over, so a redelivery or a second relay never applies it twice. Forwarding does not
 * use it: forward entries carry their own bytes (src/relay/forwards.store.ts).
 */

let lastMs = 0;
let seqInMs = 0;

/**
 * A new delivery `_id` that sorts in arrival order: the receipt time in base 36, a counter within
 * the millisecond (so two deliveries of one process never tie) and a random suffix (processes).
 */
export function nextOutboxId(nowMs: number, suffix: string): string {
  if (nowMs > lastMs) {
    lastMs = nowMs;
    seqInMs = 0;
  } else seqInMs++;
  return `${lastMs.toString(36).padStart(9, '0')}:${seqInMs.toString(36).padStart(4, '0')}:${suffix}`;
}

/** Where the sink announces a recorded delivery (the relay in this process hands it over at once). */
export interface OutboxNotifier {
  notify(doc: OutboxDoc): void;
}

/**
 * Records one of the service's own lifecycle events (a `QUEUE_STRAY`) as an outbox delivery of
 * kind `stray`, so the relay hands it over after the WABA's earlier deliveries. Returns the record.
 */
export async function recordStray(c: Collections, event: OutboxDoc['events'][number]): Promise<OutboxDoc> {
  const doc: OutboxDoc = {
    _id: nextOutboxId(Date.now(), `stray-${event.entryId}`),
    kind: 'stray',
    receivedAt: event.receivedAt,
    raw: '',
    events: [event],
    audit: '[]',
    auditCount: 0,
    wabaIds: [event.wabaId],
  };
  await c.outbox.insertOne(doc);
  return doc;
}

/** Records a delivery. One insert; throws when the store cannot take it (the webhook answers 5xx). */
export function recordDelivery(c: Collections, doc: OutboxDoc): Promise<void> {
  // Grouped with the other webhooks' records being written (one commit for many acks).
  return groupInsert(c.outbox, [doc], false);
}

/**
 * Pending deliveries older than `olderThan` (ISO), oldest first, at most `limit`, without the
 * raw bytes, the audit entries and the events (a relay reads a delivery's events when it hands
 * them over: `deliveryEvents`). A scan of `outbox` on FerretDB: it holds only what is not handed over yet.
 */
export async function pendingDeliveries(
  c: Collections,
  olderThan: string,
  limit: number,
): Promise<Omit<OutboxDoc, 'raw' | 'audit' | 'events'>[]> {
  return c.outbox
    .find({ receivedAt: { $lt: olderThan } }, { projection: { raw: 0, audit: 0, events: 0 } })
    .sort({ _id: 1 })
    .limit(limit)
    .toArray();
}

/** A pending delivery's lifecycle events (in body order), or undefined once it is gone. One read by `_id`. */
export async function deliveryEvents(c: Collections, id: string): Promise<OutboxDoc['events'] | undefined> {
  return (await c.outbox.findOne({ _id: id }, { projection: { events: 1 } }))?.events;
}

/** What the relay audits a delivery from (read when it audits it, so memory holds only ids). */
export async function deliveryAudit(
  c: Collections,
  id: string,
): Promise<Pick<OutboxDoc, 'raw' | 'audit' | 'receivedAt'> | undefined> {
  return (await c.outbox.findOne({ _id: id }, { projection: { raw: 1, audit: 1, receivedAt: 1 } })) ?? undefined;
}

/**
 * Deletes a delivery once everything in it is handed over and audited (idempotent; one write by
 * exact `_id`): no forwarder reads it (forward entries carry their own bytes).
 */
export async function deliveryHandedOver(c: Collections, id: string): Promise<void> {
  await c.outbox.deleteOne({ _id: id });
}

/** What a replay asks for: deliveries received in [since, until), of one WABA and one target or all. */
export interface ReplayFilter {
  since: string;
  until: string;
  wabaId?: string;
  target?: string;
  /** At most this many deliveries (the oldest first). */
  limit: number;
}

/**
 * Forwards delivered deliveries again (`POST /v1/deliveries/replay`): each `forwarded` row (with
 * its bytes) in the range becomes a pending entry again for its target, so the forwarders send
 * them in arrival order with their original `webhook-id`. Only to `configured` targets (one
 * removed from FORWARD_TARGETS since has no forwarder: its entry would wait forever). The entries
 * wait from now (`pendingSince`), not from the delivery's receipt. One insert; an entry still
 * pending collides harmlessly. Reads `forwarded` by `receivedAt` (an index range on MongoDB; a
 * scan on FerretDB: an operator's action, not a hot path).
 */
export async function replayDeliveries(
  c: Collections,
  f: ReplayFilter,
  configured: readonly string[],
  now: number,
): Promise<{ deliveries: number; forwards: number }> {
  const q: Record<string, unknown> = { receivedAt: { $gte: f.since, $lt: f.until } };
  if (f.wabaId) q.wabaIds = f.wabaId;
  const wanted = configured.filter((t) => !f.target || t === f.target);
  if (wanted.length === 0) return { deliveries: 0, forwards: 0 };
  const rows = await c.forwarded
    .find({ ...q, target: { $in: wanted } }, { projection: { storedAt: 0 } })
    .sort({ receivedAt: 1, deliveryId: 1 })
    .limit(f.limit * wanted.length)
    .toArray();
  // Per delivery: its bytes, the WABAs it names and the targets to send it to again.
  const byDelivery = new Map<
    string,
    { delivery: { _id: string; receivedAt: string } & DeliveryBytes; wabaIds: string[]; targets: string[] }
  >();
  for (const r of rows) {
    const { kind, raw, signature, fields } = r;
    const delivery = {
      _id: r.deliveryId,
      receivedAt: r.receivedAt,
      kind,
      raw,
      ...(signature ? { signature } : {}),
      ...(fields ? { fields } : {}),
    };
    const d = byDelivery.get(delivery._id) ?? { delivery, wabaIds: r.wabaIds, targets: [] };
    d.targets.push(r.target);
    byDelivery.set(delivery._id, d);
  }
  const replays = [...byDelivery.values()]
    .sort((a, b) => (a.delivery._id < b.delivery._id ? -1 : a.delivery._id > b.delivery._id ? 1 : 0))
    .slice(0, f.limit);
  const entries = replays.flatMap((r) => pendingEntries(r.delivery, r.targets, r.wabaIds, now));
  await insertForwards(c, entries);
  return { deliveries: replays.length, forwards: entries.length };
}

/**
 * Claims a delivery for one lease (`<id>:<lease>`), which ends at `expiresAt` (epoch ms): true when
 * this relay won it, false when another relay holds that lease. Insert-only, so two relays never
 * both win. Claims are not deleted one by one: nobody claims a lease that has ended, so the
 * retention round purges spent ones with one statement (src/adapters/store/retention.ts).
 */
export async function claimDelivery(
  c: Collections,
  id: string,
  lease: number,
  relayId: string,
  expiresAt: number,
): Promise<boolean> {
  try {
    await c.outboxClaims.insertOne({ _id: `${id}:${lease}`, relayId, at: new Date().toISOString(), expiresAt });
    return true;
  } catch (err) {
    if (isDuplicateKey(err)) return false;
    throw err;
  }
}

/** Pending deliveries (metrics, tests). */
export async function countPendingDeliveries(c: Collections): Promise<number> {
  return c.outbox.countDocuments({});
}

/** True when the event with this key was already handed over (its audit record exists). */
export async function wasHandedOver(c: Collections, key: string): Promise<boolean> {
  return (await c.accountEvents.findOne({ _id: key }, { projection: { _id: 1 } })) !== null;
}

/**
 * Records that an event was handed over (`signalled`): insert-only; a duplicate key means another
 * relay (or an earlier attempt) recorded it first, which is the same fact.
 */
export async function markHandedOver(c: Collections, doc: AccountEventDoc): Promise<void> {
  try {
    await c.accountEvents.insertOne({ ...doc, storedAt: new Date() });
  } catch (err) {
    if (!isDuplicateKey(err)) throw err;
  }
}

/** Audits events that need no hand-over (`recorded`, `refused`): one insert; redeliveries collide. */
export function recordAccountEvents(c: Collections, docs: AccountEventDoc[]): Promise<void> {
  const storedAt = new Date();
  return insertFacts(
    c.accountEvents,
    docs.map((d) => ({ ...d, storedAt })),
  );
}

/** The lifecycle event an outbox entry hands to the workflow (the audit fields stay behind). */
export function lifecycleEventOf(e: OutboxDoc['events'][number]): LifecycleEvent {
  const { entryId: _entryId, raw: _raw, ...event } = e;
  return event;
}
