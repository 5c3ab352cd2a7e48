import type { EventLogEntry, GateCause, WabaRecord, WabaState } from '../contracts';
import type { Collections } from '../adapters/store/db';

/** How many recent events a WABA document keeps. */
export const EVENT_LOG_LENGTH = 20;

/** The WABA document as a plain snapshot (no `_id`), the shape the lifecycle workflow carries. */
export type WabaSnapshot = WabaRecord;

/** A WABA we have never seen: connected, gate open. */
export function freshWaba(wabaId: string, now: string): WabaSnapshot {
  return { wabaId, state: 'connected', since: now, escalationLevel: 0, events: [], updatedAt: now };
}

/** The WABA's document, or a fresh connected one for a WABA never seen. */
export async function loadWaba(c: Collections, wabaId: string, now: string): Promise<WabaSnapshot> {
  return (await findWaba(c, wabaId)) ?? freshWaba(wabaId, now);
}

/** Told when a saved WABA left `offboarded` (metrics): for how long it was offboarded. Must not throw. */
export type OffboardingEndListener = (ended: { wabaId: string; to: WabaState; offboardedMs: number }) => void;

const offboardingListeners = new WeakMap<Collections, OffboardingEndListener[]>();

/** Calls `listener` whenever `saveWaba` on these collections replaces an offboarded WABA with another state. */
export function onOffboardingEnded(c: Collections, listener: OffboardingEndListener): void {
  const list = offboardingListeners.get(c) ?? [];
  list.push(listener);
  offboardingListeners.set(c, list);
}

/**
 * Replaces the WABA document. Only the WABA's lifecycle workflow calls this (single writer). With
 * an `onOffboardingEnded` listener and a state other than `offboarded` (or with `beforeWrite`),
 * the stored document is read first (one read by `_id`), so a retried save (already written)
 * reports nothing the second time. A save whose `rev` is not above the stored one changes nothing:
 * the workflow's local activities may run again after a failed workflow task, and an earlier
 * step's snapshot must not overwrite a later one. The stored `rev` comes from that read (or one
 * read of `rev` alone by `_id`), and the write is a replace by exact `_id`. Why not one conditional
 * replace (`{ _id, rev: { $lt } }`): FerretDB answers only a filter that is exactly `{ _id }`
 * through an index, so that filter read every WABA document on each save (measured: p50 2.3 s per
 * save with 2,000 WABAs, the whole cost of an offboarding burst), and its update reads, then
 * writes, so it was not atomic there either. What the read-then-replace leaves open on both
 * stores: a stale save that read before a newer one was written and writes after it; the
 * workflow's saves run one at a time, so only a local activity attempt that timed out and still
 * writes can do that, and the workflow's next save replaces it.
 */
export async function saveWaba(
  c: Collections,
  snapshot: WabaSnapshot,
  /** Runs before the write with the stored document (undefined for a new WABA): the one read of it. */
  beforeWrite?: (previous: WabaSnapshot | undefined) => Promise<void>,
): Promise<void> {
  const { wabaId, ...rest } = snapshot;
  const events: EventLogEntry[] = rest.events.slice(-EVENT_LOG_LENGTH);
  const listeners = offboardingListeners.get(c) ?? [];
  // The listeners hear only of a WABA leaving `offboarded`: saving `offboarded` tells them nothing.
  const told = listeners.length > 0 && rest.state !== 'offboarded';
  const before = told || beforeWrite ? await findWaba(c, wabaId) : undefined;
  if (beforeWrite) await beforeWrite(before);
  if (rest.rev !== undefined) {
    const storedRev =
      told || beforeWrite ? before?.rev : (await c.wabas.findOne({ _id: wabaId }, { projection: { rev: 1 } }))?.rev;
    if (storedRev !== undefined && storedRev >= rest.rev) return; // a later (or this) save is stored
  }
  await c.wabas.replaceOne({ _id: wabaId }, { ...rest, events }, { upsert: true });
  if (before?.state === 'offboarded' && rest.state !== 'offboarded') {
    const offboardedMs = Date.parse(rest.since) - Date.parse(before.since);
    if (Number.isFinite(offboardedMs) && offboardedMs >= 0)
      for (const l of listeners) l({ wabaId, to: rest.state, offboardedMs });
  }
}

/**
 * The WABA's state as last written by its lifecycle workflow, and the last closing event it handled
 * (what the gate weighs a hold against); undefined for a WABA never seen.
 */
export async function readWabaState(
  c: Collections,
  wabaId: string,
): Promise<Pick<WabaSnapshot, 'state' | 'reason' | 'closingHandled'> | undefined> {
  const doc = await c.wabas.findOne({ _id: wabaId }, { projection: { state: 1, reason: 1, closingHandled: 1 } });
  return doc
    ? {
        state: doc.state,
        ...(doc.reason ? { reason: doc.reason } : {}),
        ...(doc.closingHandled ? { closingHandled: doc.closingHandled } : {}),
      }
    : undefined;
}

/** The WABA's document as a snapshot, or undefined for a WABA never seen. */
export async function findWaba(c: Collections, wabaId: string): Promise<WabaSnapshot | undefined> {
  const doc = await c.wabas.findOne({ _id: wabaId });
  if (!doc) return undefined;
  const { _id, ...rest } = doc;
  return { ...rest, wabaId: _id };
}

/** WABAs (in one state, when given), by id, at most `limit`. */
export async function listWabas(c: Collections, state: WabaState | undefined, limit = 1000): Promise<WabaSnapshot[]> {
  const docs = await c.wabas
    .find(state ? { state } : {})
    .sort({ _id: 1 })
    .limit(limit)
    .toArray();
  return docs.map(({ _id, ...rest }) => ({ ...rest, wabaId: _id }));
}

/**
 * WABAs per state, closed gates per cause and the start of the longest current offboarding (epoch
 * ms), for metrics. Reads `state`, `since` and `closure.cause` of every WABA document (one scan of
 * a collection with one document per WABA).
 */
export async function wabaStateStats(c: Collections): Promise<{
  byState: Partial<Record<WabaState, number>>;
  byClosureCause: Partial<Record<GateCause, number>>;
  oldestOffboardedSince?: number;
}> {
  const docs = await c.wabas.find({}, { projection: { state: 1, since: 1, 'closure.cause': 1 } }).toArray();
  const byState: Partial<Record<WabaState, number>> = {};
  const byClosureCause: Partial<Record<GateCause, number>> = {};
  let oldest: number | undefined;
  for (const d of docs) {
    byState[d.state] = (byState[d.state] ?? 0) + 1;
    const cause = d.closure?.cause;
    if (cause) byClosureCause[cause] = (byClosureCause[cause] ?? 0) + 1;
    const since = Date.parse(d.since);
    if (d.state === 'offboarded' && Number.isFinite(since) && (oldest === undefined || since < oldest)) oldest = since;
  }
  return { byState, byClosureCause, ...(oldest !== undefined ? { oldestOffboardedSince: oldest } : {}) };
}
