import type { Logger } from '../logger';
import type { AccountEventDoc, Collections, OutboxDoc, OutboxEvent } from '../adapters/store/db';
import { randomBytes } from 'node:crypto';
import {
  claimDelivery,
  deliveryAudit,
  deliveryHandedOver,
  recordAccountEvents,
  releaseClaim,
  lifecycleEventOf,
  markHandedOver,
  pendingDeliveries,
  wasHandedOver,
} from '../adapters/store/outbox';
import { releaseGateHold } from '../adapters/store/gate-holds';
import { HOLDING_EVENTS } from '../sending/admission';
import { createLimiter } from '../util/limit';
import { deliverLifecycleEvent, type LaunchDeps } from './launch';
import { auditOfDelivery, type OutboxNotifier } from './ingest';

/** Tuning of the relay; the defaults suit production. */
export interface OutboxRelayOptions {
  /** WABAs handed over at once (each WABA's events one after the other). Default 16. */
  concurrency?: number;
  /** Deadline of one signal-with-start. Default 10 s (a call that timed out may still have
   *  been applied, and is then handed over again: a short deadline only adds duplicates). */
  deadlineMs?: number;
  /** How often the relay looks in the store for deliveries no relay is handling. Default 2 s. */
  sweepIntervalMs?: number;
  /** A delivery recorded by another process is taken over once it is this old. Default 10 s. */
  sweepAfterMs?: number;
  /** First and longest pause after a failed hand-over (doubling). Default 500 ms and 30 s. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** Events handed over per pass (at least one delivery). Default 2,000. */
  batchEvents?: number;
  /** Length of a claim on a delivery (see `outbox_claims`). Default 30 s. */
  leaseMs?: number;
}

/** The relay of one process: `notify` is the sink's fast path; `stop` ends the loop. */
export interface OutboxRelay extends OutboxNotifier {
  /** Deliveries this relay holds and has not finished. */
  readonly pending: number;
  /** Resolves once the relay holds nothing (tests, benchmarks). */
  idle(): Promise<void>;
  /** Stops after the pass in progress (bounded by `deadlineMs` per WABA). Idempotent. */
  stop(): Promise<void>;
}

/** Deliveries the audit lane audits and deletes at once. */
const AUDITS_AT_ONCE = 8;

type Held = Pick<OutboxDoc, '_id' | 'events' | 'auditCount'> & {
  receivedAtMs: number;
  lease?: number;
  /** The delivery's forward targets as recorded (none: it is deleted at once when done). */
  forward: string[];
};

/**
 * The outbox relay: hands the lifecycle events of recorded webhook deliveries (`outbox`) to their
 * workflows through `deliverLifecycleEvent`, audits each in `account_events` (`signalled`), then,
 * in a lane of its own, audits the delivery's other events (one insert) and deletes the delivery.
 *
 * - Order: passes run one at a time; within a pass, a WABA's events go one after the other in
 *   arrival order (deliveries by `_id`, events in body order), different WABAs in parallel (at most
 *   `concurrency`). When one of a WABA's events fails, that WABA's later events wait for the next
 *   pass, so the order holds; the relay then pauses with exponential back-off.
 * - At least once, applied once: an event whose key is already audited is skipped (a redelivery,
 *   or a delivery another relay finished). A crash between the signal and the audit hands the event
 *   over again; the workflow ignores a key it has seen in the open run.
 * - Several processes: each handles what its own sink recorded at once; deliveries older than
 *   `sweepAfterMs` (a process that crashed, or one still busy) are looked at by every relay. A
 *   relay works on a delivery only while it holds the delivery's current lease (`outbox_claims`,
 *   one insert per lease of `leaseMs`, which only one relay wins), so two relays hand the same
 *   event over at once only when one pass outlasts a lease. No read-modify-write: the only writes
 *   are insert-only claims and audits (a duplicate key is the same fact) and deletes by `_id`.
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
  const batchEvents = options.batchEvents ?? 2_000;
  const leaseMs = options.leaseMs ?? 30_000;
  const relayId = randomBytes(6).toString('hex');

  /** Deliveries held, in `_id` (arrival) order; `ids` also covers the pass in progress. */
  let held: Held[] = [];
  const ids = new Set<string>();
  /** Deliveries another relay holds (lease lost), by id → their WABA ids: this relay hands over
   *  none of those WABAs' later events until the sweep no longer finds the delivery pending. */
  const othersHold = new Map<string, string[]>();
  let stopped = false;
  let wake: (() => void) | undefined;
  let backingOff = false;

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

  function hold(doc: Pick<OutboxDoc, '_id' | 'events' | 'receivedAt' | 'auditCount' | 'forward'>): void {
    if (ids.has(doc._id)) return;
    ids.add(doc._id);
    held.push({
      _id: doc._id,
      events: doc.events,
      auditCount: doc.auditCount ?? 0,
      forward: doc.forward ?? [],
      receivedAtMs: Date.parse(doc.receivedAt),
    });
  }

  /** Deletes a delivery whose events are all handed over and audited; false when that failed. */
  async function finish(d: Held): Promise<boolean> {
    try {
      await deliveryHandedOver(c, d._id, d.forward);
      if (d.lease !== undefined) await releaseClaim(c, d._id, d.lease).catch(() => undefined);
      ids.delete(d._id);
      return true;
    } catch (err) {
      logger.warn({ deliveryId: d._id, err: String(err).slice(0, 500) }, 'outbox delete failed; retrying');
      return false;
    }
  }

  // The audit lane: deliveries handed over whose other events still need their audit insert. Apart
  // from the hand-over passes, so a large batch of informational events never delays the next
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
      if (added > 0) {
        held.sort((a, b) => (a._id < b._id ? -1 : a._id > b._id ? 1 : 0));
        logger.info({ deliveries: added }, 'taking over pending outbox deliveries');
      }
    } catch (err) {
      logger.warn({ err: String(err).slice(0, 500) }, 'outbox sweep failed; retrying');
    }
  }

  /** One pass over `batch`; returns the ids of deliveries that are not finished. */
  async function pass(batch: Held[]): Promise<Set<string>> {
    const byWaba = new Map<string, { deliveryId: string; event: OutboxEvent }[]>();
    for (const d of batch) {
      for (const event of d.events) {
        const list = byWaba.get(event.wabaId);
        if (list) list.push({ deliveryId: d._id, event });
        else byWaba.set(event.wabaId, [{ deliveryId: d._id, event }]);
      }
    }
    const unfinished = new Set<string>();
    let failures = 0;
    let firstFailure: { wabaId: string; key: string; err: string } | undefined;
    const limiter = createLimiter(concurrency);
    await Promise.all(
      [...byWaba].map(([wabaId, items]) =>
        limiter.run(async () => {
          for (let i = 0; i < items.length; i++) {
            const { deliveryId, event } = items[i]!;
            try {
              if (await wasHandedOver(c, event.key)) {
                // A redelivery's sink recorded a new hold: the workflow has this event already.
                if (HOLDING_EVENTS.has(event.type)) await releaseGateHold(c, wabaId);
                continue;
              }
              await deliverLifecycleEvent(launch, lifecycleEventOf(event), { deadlineMs });
              // The workflow has the closure now: its state decides the gate from here on.
              if (HOLDING_EVENTS.has(event.type)) await releaseGateHold(c, wabaId);
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
                deliveryId,
              });
            } catch (err) {
              failures++;
              firstFailure ??= { wabaId, key: event.key, err: String(err).slice(0, 500) };
              for (const rest of items.slice(i)) unfinished.add(rest.deliveryId);
              return;
            }
          }
        }),
      ),
    );
    if (failures > 0) {
      logger.warn({ failedWabas: failures, ...firstFailure }, 'outbox hand-over failed; retrying with back-off');
    }
    return unfinished;
  }

  async function loop(): Promise<void> {
    let lastSweep = 0;
    let backoff = 0;
    while (!stopped) {
      if (Date.now() - lastSweep >= sweepIntervalMs) {
        lastSweep = Date.now();
        await sweep();
      }
      if (held.length === 0) {
        await sleep(Math.max(10, sweepIntervalMs - (Date.now() - lastSweep)));
        continue;
      }
      let events = 0;
      let n = 0;
      while (n < held.length && (n === 0 || events + held[n]!.events.length <= batchEvents)) {
        events += held[n]!.events.length;
        n++;
      }
      const candidates = held.slice(0, n);
      // This relay's lease on each delivery (renewed by inserting the next lease's claim); a
      // delivery whose current lease another relay holds is theirs: let it go.
      const claims = await Promise.allSettled(
        candidates.map(async (d) => {
          const lease = Math.max(0, Math.floor((Date.now() - d.receivedAtMs) / leaseMs));
          if (d.lease === lease) return true;
          if (!(await claimDelivery(c, d._id, lease, relayId))) return false;
          d.lease = lease;
          return true;
        }),
      );
      const lost = new Set(candidates.filter((_, i) => claims[i]!.status === 'fulfilled' && !claims[i]!.value));
      const claimFailed = new Set(candidates.filter((_, i) => claims[i]!.status === 'rejected'));
      for (const d of lost) {
        ids.delete(d._id);
        othersHold.set(d._id, [...new Set(d.events.map((e) => e.wabaId))]);
      }
      // Per-WABA order across relays: a delivery waits while an earlier one of its WABAs is held
      // by another relay, or could not be claimed here.
      const deferred = new Set<Held>();
      const batch: Held[] = [];
      const deferredWabas = new Set<string>();
      for (const d of candidates) {
        if (lost.has(d)) continue;
        const wabaIds = d.events.map((e) => e.wabaId);
        const earlierElsewhere = [...othersHold].some(([id, ws]) => id < d._id && ws.some((w) => wabaIds.includes(w)));
        if (claimFailed.has(d) || earlierElsewhere || wabaIds.some((w) => deferredWabas.has(w))) {
          deferred.add(d);
          for (const w of wabaIds) deferredWabas.add(w);
          continue;
        }
        batch.push(d);
      }
      const unfinished = await pass(batch);
      const failed = unfinished.size > 0;
      for (const d of deferred) unfinished.add(d._id);
      const done = batch.filter((d) => !unfinished.has(d._id));
      // Handed over: to the audit lane (it deletes the delivery once the rest is audited).
      for (const d of done) auditQueue.push(d);
      if (done.length > 0) auditWake?.();
      const kept = unfinished;
      held = [...candidates.filter((d) => kept.has(d._id)), ...held.slice(n)];
      if (failed) {
        backoff = backoff === 0 ? initialBackoffMs : Math.min(maxBackoffMs, backoff * 2);
        backingOff = true;
        await sleep(backoff);
        backingOff = false;
      } else if (deferred.size > 0) {
        // Waiting for another relay: look again after the next sweep, no back-off.
        backoff = 0;
        lastSweep = 0;
        await sleep(Math.min(sweepIntervalMs, 1_000));
      } else backoff = 0;
    }
  }

  const running = Promise.all([loop(), auditLane()]).catch((err: unknown) => {
    logger.error({ err: String(err).slice(0, 500) }, 'outbox relay stopped unexpectedly');
  });

  return {
    notify(doc) {
      if (stopped) return;
      hold(doc);
      // New work does not cut a back-off short (Temporal is likely still down).
      if (!backingOff) wake?.();
    },
    get pending() {
      return held.length + auditQueue.length;
    },
    async idle() {
      while (!stopped && (held.length > 0 || auditQueue.length > 0)) await new Promise((r) => setTimeout(r, 50));
    },
    async stop() {
      stopped = true;
      wake?.();
      auditWake?.();
      await running;
    },
  };
}
