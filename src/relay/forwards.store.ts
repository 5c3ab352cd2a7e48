import type { Collections, DeliveryBytes, ForwardDoc, ForwardedDoc } from '../adapters/store/db';
import { insertFacts } from '../adapters/store/db';

/**
 * Forwarding progress (`forwards`: pending and dead-lettered entries, small; `forwarded`: the
 * insert-only log of what was delivered, with the bytes, which is also the replay archive). Keys:
 * `<target>:<delivery id>`. An entry carries its delivery's bytes and Meta's signature from its
 * insert on, so a delivered forward costs the entry's insert, its `forwarded` row and its delete,
 * and nothing else is written for it.
 */

export const forwardId = (target: string, deliveryId: string): string => `${target}:${deliveryId}`;

/**
 * The pending entries of a delivery, one per target (due at once), each with the delivery's bytes;
 * `wabaIds` are the WABAs it names. They wait from the delivery's receipt, or from `since` (a
 * replay: now).
 */
export function pendingEntries(
  delivery: { _id: string; receivedAt: string } & DeliveryBytes,
  targets: readonly string[],
  wabaIds: readonly string[],
  since: number = Date.parse(delivery.receivedAt),
): ForwardDoc[] {
  const bytes = bytesOf(delivery);
  return targets.map((target) => ({
    _id: forwardId(target, delivery._id),
    target,
    deliveryId: delivery._id,
    wabaIds: [...wabaIds],
    receivedAt: delivery.receivedAt,
    state: 'pending' as const,
    attempts: 0,
    nextAt: 0,
    pendingSince: since,
    ...bytes,
  }));
}

/** Just the bytes part of a record (no empty optional fields). */
function bytesOf(d: DeliveryBytes): DeliveryBytes {
  return {
    kind: d.kind,
    raw: d.raw,
    ...(d.signature !== undefined ? { signature: d.signature } : {}),
    ...(d.fields !== undefined ? { fields: d.fields } : {}),
  };
}

/** Projection leaving out an entry's or row's bytes (scans and listings never need them). */
const NO_BYTES = { raw: 0, signature: 0 } as const;

/** A forward entry as scans and listings read it: without its bytes (`NO_BYTES`). */
export type ForwardHead = Omit<ForwardDoc, keyof typeof NO_BYTES>;

/** A `forwarded` row as listings read it: without its bytes (`NO_BYTES`). */
export type ForwardedHead = Omit<ForwardedDoc, keyof typeof NO_BYTES>;

/** An entry's bytes (a point read by `_id`), or null once it is gone (another forwarder delivered it). */
export async function entryBytes(c: Collections, id: string): Promise<DeliveryBytes | null> {
  const doc = await c.forwards.findOne({ _id: id }, { projection: { kind: 1, raw: 1, signature: 1, fields: 1 } });
  return doc ? bytesOf(doc) : null;
}

/**
 * How long an entry has been waiting to be forwarded: what FORWARD_MAX_AGE (the dead letter) and
 * FORWARD_BACKLOG_ALERT_AGE (the alert) are compared with. Counted from `pendingSince`, so a
 * replayed or retried old delivery gets its full time again instead of dying or alerting at once.
 */
export const pendingAgeMs = (entry: Pick<ForwardDoc, 'pendingSince'>, now: number): number =>
  Math.max(0, now - entry.pendingSince);

/** Creates the pending entries of a new delivery (one insert command; a redo collides harmlessly). */
export function insertForwards(c: Collections, docs: ForwardDoc[]): Promise<void> {
  return insertFacts(c.forwards, docs);
}

/**
 * A target's pending entries in arrival order, at most `limit`, without their bytes (a scan of the
 * small `forwards` on FerretDB; a forwarder reads an entry's bytes by `_id` when it sends it).
 */
export async function pendingForwards(c: Collections, target: string, limit: number): Promise<ForwardHead[]> {
  return c.forwards
    .find({ target, state: 'pending' }, { projection: NO_BYTES })
    .sort({ _id: 1 })
    .limit(limit)
    .toArray();
}

/** The entry of `entries` that has waited longest (`pendingAgeMs` at `now`), and that wait (0 without one). */
export function oldestPending(entries: readonly ForwardHead[], now: number): { ageMs: number; oldest?: ForwardHead } {
  let oldest: ForwardHead | undefined;
  for (const e of entries) if (!oldest || pendingAgeMs(e, now) > pendingAgeMs(oldest, now)) oldest = e;
  return oldest ? { ageMs: pendingAgeMs(oldest, now), oldest } : { ageMs: 0 };
}

/**
 * A target's backlog as the forwarder sees it: its oldest-waiting pending entry among the first
 * `limit` in arrival order (`oldestPending`), and how many of those there are.
 */
export async function targetBacklog(
  c: Collections,
  target: string,
  now: number,
  limit = 500,
): Promise<{ ageMs: number; pending: number; oldest?: ForwardHead }> {
  const entries = await pendingForwards(c, target, limit);
  return { ...oldestPending(entries, now), pending: entries.length };
}

/** After a failed attempt: the next one, or the dead letter when the delivery is too old. */
export async function forwardFailed(
  c: Collections,
  entry: ForwardHead,
  update: { attempts: number; nextAt: number; lastError: string; dead: boolean },
): Promise<void> {
  await c.forwards.updateOne(
    { _id: entry._id },
    {
      $set: {
        attempts: update.attempts,
        nextAt: update.nextAt,
        lastError: update.lastError,
        state: update.dead ? 'dead' : 'pending',
      },
    },
  );
}

/**
 * Records a delivered forward (insert-only log, with the entry's bytes: the archive a replay
 * reads) and removes its pending entry.
 */
export async function forwardDelivered(
  c: Collections,
  entry: ForwardDoc,
  result: { attempts: number; status: number; at: string },
): Promise<void> {
  const doc: ForwardedDoc = {
    _id: entry._id,
    target: entry.target,
    deliveryId: entry.deliveryId,
    wabaIds: entry.wabaIds,
    receivedAt: entry.receivedAt,
    deliveredAt: result.at,
    attempts: result.attempts,
    status: result.status,
    ...bytesOf(entry),
    storedAt: new Date(),
  };
  await insertFacts(c.forwarded, [doc]); // another forwarder may have delivered it too (at least once)
  await c.forwards.deleteOne({ _id: entry._id });
}

/** Filters of `GET /v1/deliveries`. */
export interface DeliveryFilter {
  state?: 'pending' | 'dead' | 'delivered';
  target?: string;
  wabaId?: string;
  /** ISO times bounding `receivedAt`. */
  since?: string;
  until?: string;
  limit: number;
}

/** Forward entries matching the filter, newest first. */
export async function listForwards(c: Collections, f: DeliveryFilter): Promise<(ForwardHead | ForwardedHead)[]> {
  const q: Record<string, unknown> = {};
  if (f.target) q.target = f.target;
  if (f.wabaId) q.wabaIds = f.wabaId;
  if (f.since || f.until)
    q.receivedAt = { ...(f.since ? { $gte: f.since } : {}), ...(f.until ? { $lt: f.until } : {}) };
  const open =
    f.state === 'delivered'
      ? []
      : await c.forwards
          .find(f.state ? { ...q, state: f.state } : q, { projection: NO_BYTES })
          .sort({ _id: -1 })
          .limit(f.limit)
          .toArray();
  const done =
    f.state && f.state !== 'delivered'
      ? []
      : await c.forwarded.find(q, { projection: NO_BYTES }).sort({ _id: -1 }).limit(f.limit).toArray();
  return [...open, ...done].sort((a, b) => (a.receivedAt < b.receivedAt ? 1 : -1)).slice(0, f.limit);
}

/**
 * Puts a delivery's dead-lettered entries (of one target, or all: found by a scan of the small
 * `forwards`) back to pending; returns how many.
 */
export async function retryDead(
  c: Collections,
  deliveryId: string,
  target: string | undefined,
  now: number,
): Promise<number> {
  const targets = target
    ? [target]
    : (await c.forwards.find({ deliveryId, state: 'dead' }, { projection: { target: 1 } }).toArray()).map(
        (e) => e.target,
      );
  let n = 0;
  for (const t of targets) {
    const r = await c.forwards.updateOne(
      { _id: forwardId(t, deliveryId), state: 'dead' },
      { $set: { state: 'pending', attempts: 0, nextAt: now, pendingSince: now }, $unset: { lastError: '' } },
    );
    n += r.modifiedCount;
  }
  return n;
}

/**
 * Forward entries per state, and each target's longest wait of a pending entry (`pendingAgeMs` at
 * `now`), for metrics: one scan of the small `forwards` collection.
 */
export async function forwardStats(
  c: Collections,
  now: number,
): Promise<{
  byState: Record<ForwardDoc['state'], number>;
  /** Per target with pending entries: the longest `pendingAgeMs`. */
  longestPendingMs: Record<string, number>;
}> {
  const docs = await c.forwards
    .find({}, { projection: { state: 1, target: 1, receivedAt: 1, pendingSince: 1 } })
    .toArray();
  const byState: Record<ForwardDoc['state'], number> = { pending: 0, dead: 0 };
  const longestPendingMs: Record<string, number> = {};
  for (const d of docs) {
    byState[d.state] = (byState[d.state] ?? 0) + 1;
    if (d.state === 'pending')
      longestPendingMs[d.target] = Math.max(longestPendingMs[d.target] ?? 0, pendingAgeMs(d, now));
  }
  return { byState, longestPendingMs };
}
