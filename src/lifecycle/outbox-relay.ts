import type { Logger } from '../logger';
import type { AccountEventDoc, Collections, OutboxDoc, OutboxEvent } from '../adapters/store/db';
import { randomBytes } from 'node:crypto';
import {
  claimDelivery,
  deliveryAudit,
  deliveryHandedOver,
  recordAccountEvents,
  lifecycleEventOf,
  deliveryEvents,
  markHandedOver,
  pendingDeliveries,
  wasHandedOver,
} from './outbox.store';
import { releaseGateHold } from './gate-holds.store';
import { HOLDING_EVENTS } from '../contracts';
import { deliverLifecycleEvent } from './launch';
import { stretchedPeriod } from './machine';
import type { LaunchDeps } from '../launch-deps';
import { auditOfDelivery, type OutboxNotifier } from './ingest';

/**
 * The outbox relay: the one owner of when a recorded webhook event is handed to its workflow.
 *
 * The outbox relay runs in every server process (`src/server-main.ts`, `tools/dev.ts`,
 * `tools/stack.ts`). The sink notifies its own relay at once; each relay also sweeps `outbox`
 * every 2 s for deliveries older than 10 s (another process crashed or is slow), in a lane of its
 * own that reads no events. WABAs take turns, first in line first, 16 at a time: a turn hands over
 * at most 32 of one WABA's events, one after the other in arrival order (its oldest pending
 * delivery first; `_id` sorts by receipt time and a per-process counter), each through
 * `deliverLifecycleEvent` (10 s deadline), and the WABA goes to the back of the line; one WABA is
 * paced to 5 events/s after a burst of 32 (Temporal's advice for one workflow's signals). So a
 * WABA's new event waits for one turn of each WABA ahead of it, never for another WABA's backlog
 * or a whole large delivery. The relay keeps ids and per-WABA counters of the deliveries it holds
 * and at most about 50,000 events (the least recently used deliveries' events are read again by
 * `_id` at their next turn). After each hand-over it inserts the event's `account_events` record
 * (`signalled`); a second lane (8 deliveries at a time) then audits the delivery's other events
 * (one `insertMany`, derived from the stored raw body) and deletes the delivery by `_id`
 * (forwarding has its own entries); an event whose record exists is
 * skipped, which is how a redelivery, or a delivery another relay finished, is never applied
 * twice. A failed hand-over keeps that WABA's later events for its next turn (order holds) and
 * the relay starts no turn during a back-off (0.5 s doubling to 30 s). A delivery all of whose
 * events are handed over is deleted, so `outbox` only holds pending work and the sweep's scan
 * stays small. Relays work on a delivery only while holding its current
 * lease (`outbox_claims`, an insert of `<delivery id>:<lease n>` per 30 s, which only one relay
 * wins); a WABA whose earlier delivery another relay holds waits until that one is gone. The
 * remaining window: a crash between a signal and its audit insert, or a turn that outlasts a
 * lease, hands an event over twice; the open run ignores a key it has seen, and Meta's times make
 * a re-delivered older event stale in a later run.
 */

/** Tuning of the relay; the defaults suit production. */
export interface OutboxRelayOptions {
  /** WABAs handed over at once (each WABA's events one after the other). Default 16. */
  concurrency?: number;
  /** Deadline of one signal-with-start. Default 10 s (a call that timed out may still have
   *  been applied, and is then handed over again: a short deadline only adds duplicates). */
  deadlineMs?: number;
  /** How often the relay looks in the store for deliveries no relay is handling. Default 2 s;
   *  stretched while the look is slow (see `SWEEP_DUTY`). */
  sweepIntervalMs?: number;
  /** A delivery recorded by another process is taken over once it is this old. Default 10 s. */
  sweepAfterMs?: number;
  /** First and longest pause after a failed hand-over (doubling). Default 500 ms and 30 s. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** Events of one WABA handed over per turn, before the WABAs waiting behind it get theirs. Default 32. */
  sliceEvents?: number;
  /** Events of one WABA handed over per second once a burst of `sliceEvents` is spent. Default 5,
   *  Temporal's advice for one workflow's sustained signal rate (a flood makes one run's history
   *  and workflow tasks ever longer and takes the worker from the others; Meta sends a WABA a few). */
  wabaEventsPerSec?: number;
  /** Lifecycle events the relay keeps in memory (beyond them a delivery's events are read again
   *  from the store when one of its WABAs has its turn). Default 50,000 (about 25 MB). */
  maxLoadedEvents?: number;
  /** Length of a claim on a delivery (see `outbox_claims`). Default 30 s. */
  leaseMs?: number;
}

/** The relay of one process: `notify` is the sink's fast path; `stop` ends the loop. */
export interface OutboxRelay extends OutboxNotifier {
  /** Deliveries this relay holds and has not finished. */
  readonly pending: number;
  /** Resolves once the relay holds nothing (tests, benchmarks). */
  idle(): Promise<void>;
  /** Stops after the turns in progress (each bounded by `deadlineMs` per event). Idempotent. */
  stop(): Promise<void>;
}

/**
 * The sweep's read of `outbox` takes at most this share of the time between two sweeps. On FerretDB
 * the read decodes every pending delivery (about 1–1.7 s with 400 held during a burst of 2,000
 * offboardings, measured), so a fixed 2 s period kept the store's one core busy with the sweep and
 * slowed every hand-over; a backlog is what the relays already hold, and what the sweep finds
 * (deliveries no relay handles) can wait a little longer while it lasts.
 */
const SWEEP_DUTY = 1 / 20;
/** The longest pause between two sweeps, however slow the read (bounds a takeover's delay). */
const MAX_SWEEP_PERIOD_MS = 60_000;

/** Deliveries the audit lane audits and deletes at once. */
const AUDITS_AT_ONCE = 8;
/** Deliveries without lifecycle events claimed (and passed to the audit lane) per loop round. */
const EMPTY_AT_ONCE = 64;

/** A delivery the relay holds: ids and counters always, its events only while loaded. */
interface Held {
  _id: string;
  receivedAtMs: number;
  auditCount: number;
  /** WABAs whose events in this delivery are not all handed over (from `wabaIds`, then the events). */
  left: Set<string>;
  /** Per WABA, how many of its events in this delivery are handed over (in body order). */
  handed: Map<string, number>;
  /** The current lease held, and the claim of a lease being taken (shared by concurrent turns). */
  lease?: number;
  claim?: { lease: number; won: Promise<boolean> };
  /** Loaded: the events in body order and each WABA's positions in them. */
  events?: OutboxEvent[];
  byWaba?: Map<string, number[]>;
  loading?: Promise<boolean>;
  /** Turns using `events` now (not evicted while > 0). */
  users: number;
  /** Another relay won its lease, or the store no longer has it: this relay leaves it. */
  dropped?: boolean;
}

/**
 * The outbox relay: hands the lifecycle events of recorded webhook deliveries (`outbox`) to their
 * workflows through `deliverLifecycleEvent`, audits each in `account_events` (`signalled`), then,
 * in a lane of its own, audits the delivery's other events (one insert) and deletes the delivery.
 *
 * - Fair across WABAs: WABAs take turns (round-robin, at most `concurrency` at once); a turn hands
 *   over at most `sliceEvents` of one WABA's events, from its oldest pending delivery, and the WABA
 *   then goes to the back of the line. So a WABA's new event waits for at most one turn of each
 *   WABA ahead of it, however many events the others (or one huge delivery) still have pending.
 * - Order: a WABA's events go one after the other in arrival order (deliveries by `_id`, events in
 *   body order), different WABAs in parallel. When one of a WABA's events fails, that WABA's later
 *   events wait for its next turn, so the order holds; the relay then pauses new turns with
 *   exponential back-off.
 * - Memory: the relay holds each delivery's ids and per-WABA counters; at most about
 *   `maxLoadedEvents` events are in memory (least recently used deliveries are let go and read
 *   again by `_id` at their WABA's next turn); the sweep reads no events.
 * - At least once, applied once: an event whose key is already audited is skipped (a redelivery,
 *   or a delivery another relay finished). A crash between the signal and the audit hands the event
 *   over again; the workflow ignores a key it has seen in the open run.
 * - Several processes: each handles what its own sink recorded at once; deliveries older than
 *   `sweepAfterMs` (a process that crashed, or one still busy) are looked at by every relay. A
 *   relay works on a delivery only while it holds the delivery's current lease (`outbox_claims`,
 *   one insert per lease of `leaseMs`, which only one relay wins), so two relays hand the same
 *   event over at once only when one turn outlasts a lease. A WABA whose earlier delivery another
 *   relay holds waits until the sweep no longer finds that delivery pending. No read-modify-write:
 *   the only writes are insert-only claims and audits (a duplicate key is the same fact) and
 *   deletes by `_id`. Spent claims are left to the retention round (one statement for all).
 * - Cost per lifecycle event: one read of its audit, one signal-with-start, one audit insert (a
 *   closure's gate hold is not deleted: it stops counting once the workflow has handled the event;
 *   src/lifecycle/gate-holds.store.ts). Per delivery: a claim insert per lease, the
 *   audit insert and the delete; a read of its events by `_id` when they were not kept in memory.
 */
export function startOutboxRelay(
  deps: { c: Collections; launch: LaunchDeps; logger: Logger },
  options: OutboxRelayOptions = {},
): OutboxRelay {
  const { c, launch } = deps;
  const logger = deps.logger.child({ component: 'outbox-relay' });
  const concurrency = options.concurrency ?? 16;
  const deadlineMs = options.deadlineMs ?? 10_000;
  const sweepIntervalMs = options.sweepIntervalMs ?? 2_000;
  const sweepAfterMs = options.sweepAfterMs ?? 10_000;
  const initialBackoffMs = options.initialBackoffMs ?? 500;
  const maxBackoffMs = options.maxBackoffMs ?? 30_000;
  const sliceEvents = options.sliceEvents ?? 32;
  const wabaEventsPerSec = options.wabaEventsPerSec ?? 5;
  const maxLoadedEvents = options.maxLoadedEvents ?? 50_000;
  const leaseMs = options.leaseMs ?? 30_000;
  const relayId = randomBytes(6).toString('hex');

  /** Deliveries held and not handed over yet; `ids` also covers those in the audit lane. */
  const held = new Map<string, Held>();
  const ids = new Set<string>();
  /** Per WABA, the held deliveries that still have events of it, in `_id` (arrival) order. */
  const byWaba = new Map<string, Held[]>();
  /** Held deliveries with no lifecycle events (nothing to hand over: claim, then audit). */
  const empty: Held[] = [];
  /** The line of WABAs waiting for a turn, and the WABAs in it or having one now. */
  const line: string[] = [];
  const inLine = new Set<string>();
  const busy = new Set<string>();
  /** WABAs waiting for another relay's delivery: back in line after the next sweep. */
  const parked = new Set<string>();
  /** Each WABA's pace (a token bucket of `sliceEvents`, refilled at `wabaEventsPerSec`), and the
   *  WABAs resting until their next event is due (back in line then). Only WABAs with work. */
  const pace = new Map<string, { tokens: number; at: number }>();
  const resting = new Map<string, NodeJS.Timeout>();
  /** Loaded deliveries, least recently used first, and their events in all. */
  const loaded = new Map<string, Held>();
  let loadedEvents = 0;
  /** Deliveries another relay holds (lease lost), by id → their WABA ids: this relay hands over
   *  none of those WABAs' later events until the sweep no longer finds the delivery pending. */
  const othersHold = new Map<string, string[]>();
  let stopped = false;
  let wake: (() => void) | undefined;
  let backoff = 0;
  let backoffUntil = 0;
  let resweep = false;
  let failures = 0;
  let firstFailure: { wabaId: string; key?: string; err: string } | undefined;

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wake = undefined;
        resolve();
      }
      wake = done;
    });

  function enqueue(wabaId: string): void {
    if (inLine.has(wabaId) || busy.has(wabaId) || resting.has(wabaId)) return;
    if (!byWaba.get(wabaId)?.length) {
      pace.delete(wabaId);
      return;
    }
    inLine.add(wabaId);
    line.push(wabaId);
  }

  /** Adds `d` to `wabaId`'s deliveries, in `_id` order (a swept delivery can be older than held ones). */
  function addWaba(d: Held, wabaId: string): void {
    d.left.add(wabaId);
    const list = byWaba.get(wabaId);
    if (!list) byWaba.set(wabaId, [d]);
    else if (list[list.length - 1]!._id < d._id) list.push(d);
    else if (!list.includes(d)) {
      list.push(d);
      list.sort((a, b) => (a._id < b._id ? -1 : a._id > b._id ? 1 : 0));
    }
    enqueue(wabaId);
  }

  function removeWaba(d: Held, wabaId: string): void {
    d.left.delete(wabaId);
    const list = byWaba.get(wabaId);
    if (!list) return;
    const i = list.indexOf(d);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) byWaba.delete(wabaId);
  }

  function setEvents(d: Held, events: OutboxEvent[]): void {
    const positions = new Map<string, number[]>();
    events.forEach((e, i) => {
      const list = positions.get(e.wabaId);
      if (list) list.push(i);
      else positions.set(e.wabaId, [i]);
    });
    d.events = events;
    d.byWaba = positions;
    loaded.set(d._id, d);
    loadedEvents += events.length;
    // The events decide which WABAs are left (`wabaIds` is a hint: a service event names one).
    for (const w of [...d.left]) if ((positions.get(w)?.length ?? 0) <= (d.handed.get(w) ?? 0)) removeWaba(d, w);
    for (const [w, list] of positions) if (list.length > (d.handed.get(w) ?? 0) && !d.left.has(w)) addWaba(d, w);
  }

  function unload(d: Held): void {
    if (!d.events) return;
    loadedEvents -= d.events.length;
    loaded.delete(d._id);
    d.events = undefined;
    d.byWaba = undefined;
  }

  /** Lets the least recently used deliveries' events go until at most `maxLoadedEvents` are held. */
  function evict(): void {
    if (loadedEvents <= maxLoadedEvents) return;
    for (const d of [...loaded.values()]) {
      if (loadedEvents <= maxLoadedEvents) break;
      if (d.users === 0) unload(d);
    }
  }

  /** The delivery's events, read by `_id` when not in memory; false once the store no longer has it. */
  async function load(d: Held): Promise<boolean> {
    if (d.events) {
      loaded.delete(d._id);
      loaded.set(d._id, d);
      return true;
    }
    d.loading ??= deliveryEvents(c, d._id).then(
      (events) => {
        d.loading = undefined;
        if (events === undefined) return false;
        if (!d.events && !d.dropped) setEvents(d, events);
        return true;
      },
      (err: unknown) => {
        d.loading = undefined;
        throw err;
      },
    );
    return d.loading;
  }

  function hold(
    doc: Pick<OutboxDoc, '_id' | 'receivedAt' | 'auditCount' | 'wabaIds'> & { events?: OutboxEvent[] },
  ): void {
    if (ids.has(doc._id)) return;
    ids.add(doc._id);
    const d: Held = {
      _id: doc._id,
      auditCount: doc.auditCount ?? 0,
      receivedAtMs: Date.parse(doc.receivedAt),
      left: new Set(),
      handed: new Map(),
      users: 0,
    };
    held.set(d._id, d);
    if (doc.events) {
      setEvents(d, doc.events);
      evict();
    } else for (const w of doc.wabaIds ?? []) addWaba(d, w);
    if (d.left.size === 0) empty.push(d);
  }

  /** Leaves a delivery: another relay holds it, or it is gone from the store. */
  function drop(d: Held): void {
    if (d.dropped) return;
    d.dropped = true;
    for (const w of [...d.left]) {
      removeWaba(d, w);
      enqueue(w);
    }
    held.delete(d._id);
    unload(d);
    ids.delete(d._id);
  }

  /** All its events are handed over: to the audit lane (which deletes it once the rest is audited). */
  function handedOver(d: Held): void {
    if (d.dropped || !held.has(d._id)) return;
    held.delete(d._id);
    unload(d);
    auditQueue.push(d);
    auditWake?.();
  }

  /** This relay's lease on a delivery (renewed by inserting the next lease's claim); false when
   *  another relay holds the current lease. Concurrent turns on one delivery share the claim. */
  function claim(d: Held): Promise<boolean> {
    const lease = Math.max(0, Math.floor((Date.now() - d.receivedAtMs) / leaseMs));
    if (d.lease === lease) return Promise.resolve(true);
    if (d.claim?.lease === lease) return d.claim.won;
    const won = claimDelivery(c, d._id, lease, relayId, d.receivedAtMs + (lease + 1) * leaseMs).then(
      (ok) => {
        if (ok) d.lease = lease;
        return ok;
      },
      (err: unknown) => {
        if (d.claim?.won === won) d.claim = undefined;
        throw err;
      },
    );
    d.claim = { lease, won };
    return won;
  }

  function failed(wabaId: string, err: unknown, key?: string): void {
    failures++;
    firstFailure ??= { wabaId, ...(key ? { key } : {}), err: String(err).slice(0, 500) };
    backoff = backoff === 0 ? initialBackoffMs : Math.min(maxBackoffMs, backoff * 2);
    backoffUntil = Date.now() + backoff;
  }

  /** Per-WABA order across relays: true while an earlier delivery of the WABA is another relay's. */
  function heldElsewhere(wabaId: string, d: Held): boolean {
    for (const [id, wabas] of othersHold) if (id < d._id && wabas.includes(wabaId)) return true;
    return false;
  }

  /** Takes one of the WABA's tokens; else puts it to rest until one is due and returns false. */
  function paced(wabaId: string): boolean {
    const now = Date.now();
    const p = pace.get(wabaId) ?? { tokens: sliceEvents, at: now };
    p.tokens = Math.min(sliceEvents, p.tokens + ((now - p.at) * wabaEventsPerSec) / 1000);
    p.at = now;
    pace.set(wabaId, p);
    if (p.tokens >= 1) {
      p.tokens -= 1;
      return true;
    }
    const dueMs = Math.ceil(((1 - p.tokens) * 1000) / wabaEventsPerSec);
    resting.set(
      wabaId,
      setTimeout(() => {
        resting.delete(wabaId);
        enqueue(wabaId);
        wake?.();
      }, dueMs),
    );
    return false;
  }

  /** A store step of a turn: its result, or undefined once its failure is recorded (back-off). */
  async function orFail<T>(wabaId: string, step: () => Promise<T>): Promise<T | undefined> {
    try {
      return await step();
    } catch (err) {
      failed(wabaId, err);
      return undefined;
    }
  }

  /** One turn of a WABA: up to `sliceEvents` of its events from its oldest pending delivery. */
  async function turn(wabaId: string): Promise<void> {
    const d = byWaba.get(wabaId)?.[0];
    if (!d) return;
    if (heldElsewhere(wabaId, d)) {
      parked.add(wabaId);
      resweep = true;
      return;
    }
    const won = await orFail(wabaId, () => claim(d));
    if (won === undefined) return;
    if (!won) {
      othersHold.set(d._id, [...new Set([...d.left, ...(d.byWaba?.keys() ?? [])])]);
      drop(d);
      resweep = true;
      return;
    }
    d.users++;
    try {
      const present = await orFail(wabaId, () => load(d));
      if (present === undefined) return;
      if (!present) {
        // Deleted: another relay finished it.
        drop(d);
        return;
      }
      const positions = d.byWaba?.get(wabaId) ?? [];
      const events = d.events!;
      const first = d.handed.get(wabaId) ?? 0;
      let n = first;
      const end = Math.min(positions.length, n + sliceEvents);
      for (; n < end && !d.dropped && !stopped; n++) {
        const event = events[positions[n]!]!;
        try {
          if (await wasHandedOver(c, event.key)) {
            // A redelivery's sink wrote a new hold that the workflow, having had this event, never
            // handles again: released here, unless a newer closure's hold has replaced it.
            if (HOLDING_EVENTS.has(event.type)) await releaseGateHold(c, wabaId, event.key);
            d.handed.set(wabaId, n + 1);
            continue;
          }
          if (!paced(wabaId)) break;
          // A closure's gate hold stays: it stops counting once the workflow has handled the event.
          await deliverLifecycleEvent(launch, lifecycleEventOf(event), { deadlineMs });
          await markHandedOver(c, {
            _id: event.key,
            wabaId,
            event: event.type,
            ...(event.metaTime !== undefined ? { metaTime: event.metaTime } : {}),
            entryId: event.entryId,
            raw: event.raw,
            receivedAt: event.receivedAt,
            outcome: 'signalled',
            handedOverAt: new Date().toISOString(),
            deliveryId: d._id,
          });
          d.handed.set(wabaId, n + 1);
        } catch (err) {
          failed(wabaId, err, event.key);
          return;
        }
      }
      if (n >= positions.length && !d.dropped) {
        removeWaba(d, wabaId);
        if (d.left.size === 0) handedOver(d);
      }
      if (n > first) backoff = 0;
    } finally {
      d.users--;
      evict();
    }
  }

  /** Deliveries without lifecycle events: claimed, then straight to the audit lane. */
  async function passEmpty(): Promise<void> {
    const batch = empty.splice(0, EMPTY_AT_ONCE);
    const claims = await Promise.allSettled(batch.map(claim));
    batch.forEach((d, i) => {
      const r = claims[i]!;
      if (r.status === 'rejected') {
        failed('', r.reason);
        empty.push(d);
      } else if (r.value) handedOver(d);
      else drop(d);
    });
  }

  /** Deletes a delivery whose events are all handed over and audited; false when that failed. */
  async function finish(d: Held): Promise<boolean> {
    try {
      await deliveryHandedOver(c, d._id);
      ids.delete(d._id);
      return true;
    } catch (err) {
      logger.warn({ deliveryId: d._id, err: String(err).slice(0, 500) }, 'outbox delete failed; retrying');
      return false;
    }
  }

  // The audit lane: deliveries handed over whose other events still need their audit insert. Apart
  // from the hand-over turns, so a large batch of informational events never delays the next
  // delivery's lifecycle events. Holds ids only; the entries are read back from the store.
  const auditQueue: Held[] = [];
  let auditWake: (() => void) | undefined;
  async function auditOne(d: Held): Promise<void> {
    const stored = d.auditCount > 0 ? await deliveryAudit(c, d._id) : undefined;
    let entries: AccountEventDoc[] = [];
    try {
      entries = stored ? auditOfDelivery({ _id: d._id, ...stored }) : [];
    } catch (err) {
      // The body parsed at the ack; only a change of the parser can get here. Its lifecycle
      // events are handed over already: log and let the delivery go rather than retry forever.
      logger.error(
        { deliveryId: d._id, err: String(err).slice(0, 500) },
        'outbox audit: the stored body no longer parses',
      );
    }
    if (entries.length > 0) await recordAccountEvents(c, entries);
    if (!(await finish(d))) throw new Error('delete failed');
  }
  async function auditLane(): Promise<void> {
    let backoff = 0;
    while (!stopped) {
      if (auditQueue.length === 0) {
        await new Promise<void>((resolve) => (auditWake = resolve));
        auditWake = undefined;
        continue;
      }
      // Deliveries are independent here (their hand-overs are done): several at once, so the
      // outbox empties as fast as the store takes the writes.
      const batch = auditQueue.slice(0, AUDITS_AT_ONCE);
      const results = await Promise.allSettled(batch.map(auditOne));
      const done = new Set(batch.filter((_, i) => results[i]!.status === 'fulfilled'));
      for (let i = auditQueue.length - 1; i >= 0; i--) if (done.has(auditQueue[i]!)) auditQueue.splice(i, 1);
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (!failed) {
        backoff = 0;
        continue;
      }
      backoff = backoff === 0 ? initialBackoffMs : Math.min(maxBackoffMs, backoff * 2);
      logger.warn(
        { failed: batch.length - done.size, err: String(failed.reason).slice(0, 500) },
        'outbox audit failed; retrying',
      );
      await new Promise((r) => setTimeout(r, backoff));
    }
  }

  async function sweep(): Promise<void> {
    try {
      const olderThan = new Date(Date.now() - sweepAfterMs).toISOString();
      const found = await pendingDeliveries(c, olderThan, 500);
      const stillPending = new Set(found.map((d) => d._id));
      for (const id of othersHold.keys()) if (!stillPending.has(id)) othersHold.delete(id);
      let added = 0;
      for (const doc of found) {
        if (ids.has(doc._id)) continue;
        hold(doc);
        added++;
      }
      if (added > 0) logger.info({ deliveries: added }, 'taking over pending outbox deliveries');
    } catch (err) {
      logger.warn({ err: String(err).slice(0, 500) }, 'outbox sweep failed; retrying');
    }
    for (const w of parked) enqueue(w);
    parked.clear();
  }

  /** The sweep, in a lane of its own: a slow scan of `outbox` never holds up the next turn. */
  async function sweepLane(): Promise<void> {
    while (!stopped) {
      const started = Date.now();
      await sweep();
      wake?.();
      // Every `sweepIntervalMs` (within 1 s while a WABA waits for another relay's delivery), but
      // no more often than keeps the read within `SWEEP_DUTY` of the time.
      const base = resweep ? Math.min(sweepIntervalMs, 1_000) : sweepIntervalMs;
      const period = stretchedPeriod(base, Date.now() - started, SWEEP_DUTY, MAX_SWEEP_PERIOD_MS);
      while (!stopped && Date.now() - started < period)
        await new Promise((r) => setTimeout(r, Math.min(100, sweepIntervalMs)));
      resweep = false;
    }
  }

  /** Hands WABAs their turns (at most `concurrency` at once), first in line first. */
  async function loop(): Promise<void> {
    const turns = new Set<Promise<void>>();
    let emptyPass: Promise<void> | undefined;
    while (!stopped) {
      if (failures > 0) {
        logger.warn({ failed: failures, ...firstFailure }, 'outbox hand-over failed; retrying with back-off');
        failures = 0;
        firstFailure = undefined;
      }
      if (Date.now() < backoffUntil) {
        await sleep(backoffUntil - Date.now());
        continue;
      }
      if (empty.length > 0 && !emptyPass) {
        emptyPass = passEmpty().finally(() => {
          emptyPass = undefined;
          wake?.();
        });
      }
      while (turns.size < concurrency && line.length > 0 && Date.now() >= backoffUntil) {
        const wabaId = line.shift()!;
        inLine.delete(wabaId);
        busy.add(wabaId);
        const t: Promise<void> = turn(wabaId)
          .catch((err: unknown) => failed(wabaId, err))
          .finally(() => {
            busy.delete(wabaId);
            turns.delete(t);
            // To the back of the line, behind every WABA that waited meanwhile.
            if (!parked.has(wabaId)) enqueue(wabaId);
            wake?.();
          });
        turns.add(t);
      }
      await sleep(sweepIntervalMs);
    }
    await Promise.all([...turns, emptyPass]);
  }

  const running = Promise.all([loop(), sweepLane(), auditLane()]).catch((err: unknown) => {
    logger.error({ err: String(err).slice(0, 500) }, 'outbox relay stopped unexpectedly');
  });

  return {
    notify(doc) {
      if (stopped) return;
      hold(doc);
      // New work does not cut a back-off short (Temporal is likely still down).
      if (Date.now() >= backoffUntil) wake?.();
    },
    get pending() {
      return held.size + auditQueue.length;
    },
    async idle() {
      while (!stopped && (held.size > 0 || auditQueue.length > 0)) await new Promise((r) => setTimeout(r, 50));
    },
    async stop() {
      stopped = true;
      for (const timer of resting.values()) clearTimeout(timer);
      wake?.();
      auditWake?.();
      await running;
    },
  };
}
