import type { Collections } from '../adapters/store/db';
import { claimSlot, readPauses, recordPause, type NumberPauses, type SlotClaim } from './slots.store';

/**
 * Pacing for Cloud API sends, shared by every worker through the database: the one module that
 * decides when a send may leave. Every send of a phone number, direct (`admit`) or drained, takes
 * a start slot of that number (Meta's throughput cap) and one of its recipient (Meta's pair limit)
 * by inserting one document into `send_slots`: its `_id` is the cap slot, its `pair` the pair slot,
 * each under a unique index, so one insert (one write statement) claims both or neither, and two
 * workers never hold the same slot (on MongoDB and on FerretDB, where only inserts on unique keys
 * are atomic). A refused claim says which slot was taken (read back by `_id` on FerretDB, whose
 * error does not name the index) and moves on from that one only. A back-off Meta
 * asks for (130429, 131056) is recorded in `send_pauses` and read before every claim and just
 * before every departure, so it holds for every worker: one read answers for a number and all its
 * recipients, and serves this process's sends for PAUSE_READ_TTL_MS. A claim is aimed past the
 * time its sender needs to prepare the send and read the pause (`leadMs`), so that on a loaded
 * worker or database the send can still leave within `LATE_TOLERANCE_MS` of its slot.
 *
 * The cap: slot `k` of a number starts at `k × capSlotMs(mps)` on the shared clock (the database
 * server's, as each worker measures it: src/sending/shared-clock.ts; a worker's own clock may be
 * seconds off); a send leaves at its slot's start and at most `LATE_TOLERANCE_MS` after it (a later
 * one takes a new slot), so any 1,000 ms window at the receiver holds at most `mps` sends even with
 * `ARRIVAL_JITTER_MS` of jitter each way and each worker's clock `CLOCK_ERROR_MS` off the shared one.
 *
 * The pair limit (a token bucket of `burst`, one more per `intervalMs`): pair slot `j` of a
 * recipient lies in the interval `[j × intervalMs, (j + 1) × intervalMs)`; a sender claims the
 * lowest free slot from the current interval on and may leave from interval `j − (burst − 3) + 1`
 * on, so any span of time holds at most `burst − 1 + span / intervalMs` sends to one recipient.
 *
 * Costs stay flat with history: claims are point inserts by `_id` (the unique index's check; no
 * read of `send_slots` ever scans it). Spent slots are left where they are: nobody claims a slot
 * that has started, so they only take room until the retention round deletes them, one filtered
 * `deleteMany` for all of them (src/adapters/store/retention.ts), instead of a delete statement per
 * slot per send.
 */

/** Clock and sleep, injectable for tests. */
export interface Clock {
  now(): number;
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const realClock: Clock = {
  now: () => performance.timeOrigin + performance.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve) => {
      if (ms <= 0 || signal?.aborted) return resolve();
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        resolve();
      }
      signal?.addEventListener('abort', done, { once: true });
    }),
};

/** Arrival jitter (each way) that the cap tolerates between our clock and the receiver's. */
export const ARRIVAL_JITTER_MS = 40;
/**
 * How far, each way, a worker's pacing clock may be from the shared (database server's) clock with
 * every cap still holding at the receiver: the slot width pays for twice this (two workers may be
 * off in opposite directions). Workers measure their offset to that clock (src/sending/shared-clock.ts);
 * a measurement whose error bound is larger (a database more than about 7 ms away, a worker too
 * busy to answer promptly) raises the clock alert.
 */
export const CLOCK_ERROR_MS = 4;
/**
 * A send leaves at most this long after its slot's start; later, it takes a new slot (and may then
 * leave after sends of other recipients reserved after it). Timers on a busy worker fire 20–35 ms
 * late; the slot width pays for this tolerance.
 */
export const LATE_TOLERANCE_MS = 50;
/**
 * How long after its answer a worker trusts its last read of a pause, up to a slot's start (a
 * pause seen anywhere applies everywhere within this, plus the time a read takes and the
 * tolerance).
 */
export const PAUSE_READ_TTL_MS = 100;
/** The most a sender is woken before its start to prepare it (`SharedPacer.leadMs`). */
const MAX_LEAD_MS = 1_000;
/** Pair slots kept back from Meta's burst (slot rounding and jitter). */
const PAIR_BURST_MARGIN = 3;

/**
 * Width of a number's cap slots: with sends leaving at slot starts (+ `LATE_TOLERANCE_MS`) and
 * workers' clocks up to `2 × CLOCK_ERROR_MS` apart, a window of `1000 + 2 × ARRIVAL_JITTER_MS` ms
 * meets at most `mps` slots. For 20 msg/s: 56.9 ms (17.6 msg/s, 87.9% of the cap; 25 ms of jitter
 * let one 130429 through under a load average of 13).
 */
export function capSlotMs(mps: number): number {
  const cap = Math.max(1, Math.floor(mps));
  return (1000 + 2 * ARRIVAL_JITTER_MS + LATE_TOLERANCE_MS + 2 * CLOCK_ERROR_MS) / cap + 0.01;
}

/**
 * Most sends whose start falls in any window of `windowMs` (on one true clock) when each slot's
 * send leaves in `[start, start + late]` and the workers' clocks are up to `clockSpreadMs` apart.
 */
export function maxSendsPerWindow(
  mps: number,
  windowMs: number,
  lateMs = LATE_TOLERANCE_MS,
  clockSpreadMs = 2 * CLOCK_ERROR_MS,
): number {
  return Math.floor((windowMs + lateMs + clockSpreadMs) / capSlotMs(mps)) + 1;
}

export interface PairSettings {
  /** Meta's pair-limit burst (`PAIR_LIMIT_BURST`). */
  burst: number;
  /** One more send per this many ms (`PAIR_LIMIT_INTERVAL_MS`); 0 turns pair pacing off. */
  intervalMs: number;
}

/** A claimed start: the send may leave at `at` (epoch ms). */
export interface Reservation {
  phoneNumberId: string;
  mps: number;
  to?: string;
  at: number;
  /**
   * Resolves once every reservation of the number this process holds with an earlier start has
   * left (or was dropped).
   */
  turn: Promise<void>;
  /** Marks this reservation as left or dropped (idempotent). */
  done: () => void;
}

/** A claimed start, and the earliest its recipient allows (no recipient: `-Infinity`). */
type Claimed = { kind: 'reserved'; at: number; notBefore: number } | { kind: 'later'; retryAfterMs: number };

/** A reservation nobody departs with stops holding back the next one this long after its start. */
const DROPPED_AFTER_MS = 2_000;

export interface ReserveRequest {
  phoneNumberId: string;
  mps: number;
  /** The recipient, for the pair limit. */
  to?: string;
  /** Claim nothing that starts later than this many ms from now: answer `retryAfterMs` instead. */
  maxWaitMs?: number;
}

export type ReserveResult = { kind: 'reserved'; reservation: Reservation } | { kind: 'later'; retryAfterMs: number };

/** A reservation this process holds, as the pacer tracks it until it leaves or is dropped. */
interface Held {
  /** Its first start: this process's sends of a number leave in this order. */
  readonly order: number;
  /** The start it holds now: a late send before it may have taken its slot and left it its own, past one. */
  at: number;
  departed: Promise<void>;
  /** Left or dropped: its slot is nobody's to take any more. */
  gone: boolean;
  /** When the sender woke to prepare it (`prepare`): its preparation's time is measured from here. */
  preparedAt?: number;
  /** The earliest its recipient allows (pause, pair slot): a slot before it is never swapped to it. */
  notBefore: number;
}

/**
 * The shared limiter of one worker process. Its memory holds only hints (the last slot it tried
 * per number and recipient, recent pause reads) that the unique-key inserts verify.
 */
export class SharedPacer {
  private readonly capHint = new Map<string, number>();
  private readonly pairHint = new Map<string, number>();
  /** Per number, its last pause read (its own and its recipients'), and when it was answered. */
  private readonly pauseReads = new Map<string, NumberPauses & { answeredAt: number }>();
  /** Pauses this process recorded (`pause`, `penalize`), by key: they hold here before any read sees them. */
  private readonly ownPauses = new Map<string, number>();
  /** Per number, this process's reservations not yet left (nor dropped). */
  private readonly pending = new Map<string, Set<Held>>();
  private readonly heldOf = new WeakMap<Reservation, Held>();
  /**
   * Departures that missed their slot (this process was late) and took another, the slot of a send
   * held behind them or a new one: for tests and metrics.
   */
  lateDepartures = 0;
  /** New cap slots claimed for them: each one a slot of the number this process left unused. */
  lateClaims = 0;
  /** Recent cap-slot claim latency, ms (moving average; undefined before the first claim). */
  private claimMs: number | undefined;
  /** Pause reads under way, per key: a caller that needs one as fresh joins it. */
  private readonly pauseReadsInFlight = new Map<string, { startedAt: number; read: Promise<NumberPauses> }>();
  /** Recent preparation time of a send (from `prepare`'s wake to `depart`), ms (moving average). */
  private prepareMs: number | undefined;
  /** Recent pause read latency, ms (moving average; undefined before the first read). */
  private pauseReadMs: number | undefined;

  constructor(
    private readonly c: Collections,
    private readonly pair: PairSettings,
    private readonly clock: Clock = realClock,
    /** Told of each late (or paused) departure and what took its place: the next held slot, or a new claim (metrics). */
    private readonly onLate?: (remedy: 'swap' | 'claim') => void,
  ) {}

  /** Nothing to stop: the pacer keeps no timer (spent slots are the retention round's, see above). */
  close(): void {}

  /**
   * Claims the earliest start this send may have: a pair slot of the recipient and the first free
   * cap slot of the number at or after it, in one insert (`claimCapAndPair`). Does not wait.
   * Claims made in call order start in that order (per process; across processes, in claim order).
   */
  async reserve(req: ReserveRequest): Promise<ReserveResult> {
    const now = this.clock.now();
    // A start the sender can still make once the claim is answered and it has prepared (`leadMs`).
    const ready = now + (this.claimMs ?? 0) + this.leadMs();
    const earliest = Math.max(ready, await this.pausedUntil(req.phoneNumberId));
    const capAt =
      req.to !== undefined && this.pair.intervalMs > 0
        ? await this.claimCapAndPair(req.phoneNumberId, req.mps, req.to, earliest, req.maxWaitMs)
        : await this.claimCap(req.phoneNumberId, req.mps, earliest, req.maxWaitMs);
    if (capAt.kind === 'later') return capAt;
    // The turn: the reservations this process holds with an earlier start, not the ones answered
    // before this one. Concurrent claims (direct sends, two drains' retries) are answered out of
    // order; a send behind one with a later start would find its own slot past and take a new one,
    // and every send behind it the same.
    let pending = this.pending.get(req.phoneNumberId);
    if (!pending) this.pending.set(req.phoneNumberId, (pending = new Set()));
    const ahead = [...pending].filter((h) => h.order < capAt.at).map((h) => h.departed);
    const turn = ahead.length > 0 ? Promise.all(ahead).then(() => undefined) : Promise.resolve();
    let resolve!: () => void;
    const held: Held = {
      order: capAt.at,
      at: capAt.at,
      notBefore: capAt.notBefore,
      departed: new Promise<void>((r) => (resolve = r)),
      gone: false,
    };
    const done = (): void => {
      held.gone = true;
      resolve();
    };
    pending.add(held);
    const timer = setTimeout(done, capAt.at - now + DROPPED_AFTER_MS);
    timer.unref();
    const set = pending;
    void held.departed.then(() => {
      clearTimeout(timer);
      set.delete(held);
      if (set.size === 0 && this.pending.get(req.phoneNumberId) === set) this.pending.delete(req.phoneNumberId);
    });
    const reservation: Reservation = {
      phoneNumberId: req.phoneNumberId,
      mps: req.mps,
      to: req.to,
      at: capAt.at,
      turn,
      done,
    };
    this.heldOf.set(reservation, held);
    return { kind: 'reserved', reservation };
  }

  /**
   * Waits for the reservation's start, then makes sure the send may still leave (not later than
   * `LATE_TOLERANCE_MS` after its slot, no pause recorded since); otherwise takes the slot of the
   * next send of the number this process holds (which takes the next one's when its turn comes,
   * and the last one a new slot), or claims a new cap slot, and waits again. Resolves false
   * without sending on abort.
   */
  async depart(r: Reservation, signal?: AbortSignal): Promise<boolean> {
    const held = this.heldOf.get(r) ?? {
      order: r.at,
      at: r.at,
      notBefore: r.at,
      departed: Promise.resolve(),
      gone: false,
    };
    if (held.preparedAt !== undefined) {
      const took = Math.max(0, this.clock.now() - held.preparedAt);
      this.prepareMs = this.prepareMs === undefined ? took : this.prepareMs + (took - this.prepareMs) / 8;
    }
    try {
      let turn: Promise<void> | undefined = r.turn;
      for (;;) {
        // The pause is read shortly before the slot (a read answered at most PAUSE_READ_TTL_MS
        // before the slot's start will do, so one read serves the sends of that span), timed to
        // be answered half the tolerance ahead of the slot: not after the wake, where on a loaded
        // database the read took longer than the whole tolerance, so every try came out late and
        // claimed again (about 30 claims a send in a wave of 1,000 reconnections).
        const freshFrom = held.at - PAUSE_READ_TTL_MS;
        const readFrom = held.at - LATE_TOLERANCE_MS / 2 - (this.pauseReadMs ?? 0);
        await this.clock.sleep(readFrom - this.clock.now(), signal);
        if (signal?.aborted) return false;
        const reading = this.pausedUntil(r.phoneNumberId, freshFrom);
        reading.catch(() => undefined); // awaited below (after the turn): not an unhandled rejection meanwhile
        if (turn) {
          // This process's sends of a number leave in the order of their starts, so a late one
          // holds back those reserved after it instead of being overtaken by them. (The read is
          // made meanwhile: waiting for the turn first put a read between each send and the next.)
          const at = held.at;
          await turn;
          turn = undefined;
          if (held.at !== at) {
            // A late send before it took its slot: read for the one it holds now.
            await reading;
            continue;
          }
        }
        const paused = await reading;
        // `held.at` is read again after each wait: a late send before this one may have taken its
        // slot meanwhile.
        await this.clock.sleep(held.at - this.clock.now(), signal);
        if (signal?.aborted) return false;
        const now = this.clock.now();
        const at = held.at;
        if (now - at <= LATE_TOLERANCE_MS && paused <= at) return true;
        // Late (this process was busy past its slot) or paused. The slots this process holds for
        // the number's next sends are the earliest it can have: the next one is taken (a swap, no
        // claim), and that send, late in turn, takes the one after when its turn comes; so a late
        // send costs one slot, not one for every send held behind it. None ahead: the slot that
        // will be under way when a claim is answered, left in without a timer, else the next one
        // (the pause read again beside the claim, so it is fresh when the answer comes).
        // Sleeping to the next slot again would, on a saturated event loop or a slow database,
        // miss it again and again.
        this.lateDepartures++;
        const next = this.nextHeld(r.phoneNumberId, held, Math.max(now - LATE_TOLERANCE_MS / 2, paused));
        if (next) {
          this.onLate?.('swap');
          [held.at, next.at] = [next.at, at];
          continue;
        }
        this.lateClaims++;
        this.onLate?.('claim');
        const [claimed] = await Promise.all([
          this.claimCap(r.phoneNumberId, r.mps, Math.max(now, paused, held.notBefore), undefined, {
            answerInMs: Math.max(this.claimMs ?? 0, this.pauseReadMs ?? 0),
          }),
          this.pausedUntil(r.phoneNumberId, Infinity),
        ]);
        if (claimed.kind === 'reserved') held.at = claimed.at;
      }
    } finally {
      r.done();
    }
  }

  /** The earliest slot, at `notBefore` or later, of the sends of the number this process holds after `held`. */
  private nextHeld(phoneNumberId: string, held: Held, notBefore: number): Held | undefined {
    let best: Held | undefined;
    for (const h of this.pending.get(phoneNumberId) ?? []) {
      // Not one its recipient holds back past the slot it would be given (its pause, its pair slot).
      if (h === held || h.gone || h.order <= held.order || h.at < notBefore || h.notBefore > held.at) continue;
      if (!best || h.at < best.at) best = h;
    }
    return best;
  }

  /**
   * Sleeps until `at` on the pacer's clock: the callers' waits, on the clock the slots are
   * numbered on, not the process's own.
   */
  sleepUntil(at: number, signal?: AbortSignal): Promise<void> {
    return this.clock.sleep(at - this.clock.now(), signal);
  }

  /**
   * Sleeps until the sender should prepare the reservation's send (record the POST in the ledger),
   * `leadMs` before its start: early enough that `depart` is called in time to read the pause
   * ahead of the slot, late enough that a crash in between leaves little in doubt.
   */
  async prepare(r: Reservation, signal?: AbortSignal): Promise<void> {
    await this.sleepUntil(r.at - this.leadMs(), signal);
    const held = this.heldOf.get(r);
    if (held) held.preparedAt = this.clock.now();
  }

  /**
   * How long before a start its sender wakes to prepare (`prepare`): its preparation's recent time
   * (from the wake to `depart`) and the pause read `depart` makes ahead of the slot; at most
   * MAX_LEAD_MS. A worker with an idle database: a few ms; a saturated one (reads and writes of
   * 50 ms): about 150 ms. Nothing more is added: a send that comes a little later than the average
   * is still within LATE_TOLERANCE_MS. Claims aim past it (`reserve`): a slot claimed nearer would
   * have passed by the time its send could leave.
   */
  leadMs(): number {
    const lead = (this.prepareMs ?? 0) + (this.pauseReadMs ?? 0);
    return Math.min(MAX_LEAD_MS, lead);
  }

  /** `reserve` then `depart` (on abort it returns early: check the signal before sending). */
  async take(req: ReserveRequest, signal?: AbortSignal): Promise<ReserveResult> {
    const got = await this.reserve(req);
    if (got.kind === 'reserved') await this.depart(got.reservation, signal);
    return got;
  }

  /** Meta throttled the number (130429): no worker starts one of its sends for `ms`. */
  async pause(phoneNumberId: string, ms: number): Promise<void> {
    const now = this.clock.now();
    this.recordOwn(phoneNumberId, now + ms, now);
    await recordPause(this.c, phoneNumberId, now + ms, now);
  }

  /** Meta refused a send for the recipient's pair limit (131056): nobody sends to `to` for `ms`. */
  async penalize(phoneNumberId: string, to: string, ms: number): Promise<void> {
    const now = this.clock.now();
    const key = pairKey(phoneNumberId, to);
    this.recordOwn(key, now + ms, now);
    await recordPause(this.c, key, now + ms, now);
  }

  private recordOwn(key: string, until: number, now: number): void {
    if (this.ownPauses.size > 10_000) for (const [k, u] of this.ownPauses) if (u <= now) this.ownPauses.delete(k);
    this.ownPauses.set(key, Math.max(until, this.ownPauses.get(key) ?? 0));
  }

  /** When the number may send again (see `pausesOf`). */
  private async pausedUntil(phoneNumberId: string, freshFrom = -Infinity): Promise<number> {
    const read = await this.pausesOf(phoneNumberId, freshFrom);
    return Math.max(read.number, this.ownPauses.get(phoneNumberId) ?? 0);
  }

  /** When `to` may be sent to again from the number (see `pausesOf`). */
  private async pairPausedUntil(phoneNumberId: string, to: string): Promise<number> {
    const read = await this.pausesOf(phoneNumberId);
    return Math.max(read.pairs.get(to) ?? 0, this.ownPauses.get(pairKey(phoneNumberId, to)) ?? 0);
  }

  /**
   * The number's pauses and its recipients', from one read (`readPauses`): this process's last
   * read if it was answered at `freshFrom` or later and less than PAUSE_READ_TTL_MS ago, else a
   * read under way that should be answered from `freshFrom` on, else a new read (its time kept in
   * `pauseReadMs`). One read answers for every recipient: a drain's sends to many recipients cost
   * a read per 100 ms, not one each.
   */
  private async pausesOf(phoneNumberId: string, freshFrom = -Infinity): Promise<NumberPauses> {
    const startedAt = this.clock.now();
    const read = this.pauseReads.get(phoneNumberId);
    if (read && read.answeredAt >= freshFrom && startedAt - read.answeredAt < PAUSE_READ_TTL_MS) return read;
    const inFlight = this.pauseReadsInFlight.get(phoneNumberId);
    if (inFlight && inFlight.startedAt + (this.pauseReadMs ?? 0) >= freshFrom) return inFlight.read;
    const reading = this.readPauses(phoneNumberId, startedAt);
    this.pauseReadsInFlight.set(phoneNumberId, { startedAt, read: reading });
    try {
      return await reading;
    } finally {
      if (this.pauseReadsInFlight.get(phoneNumberId)?.read === reading) this.pauseReadsInFlight.delete(phoneNumberId);
    }
  }

  private async readPauses(phoneNumberId: string, startedAt: number): Promise<NumberPauses> {
    const pauses = await readPauses(this.c, phoneNumberId, startedAt);
    const now = this.clock.now();
    const took = now - startedAt;
    this.pauseReadMs = this.pauseReadMs === undefined ? took : this.pauseReadMs + (took - this.pauseReadMs) / 8;
    if (this.pauseReads.size > 10_000) this.pauseReads.clear();
    this.pauseReads.set(phoneNumberId, { ...pauses, answeredAt: now });
    return pauses;
  }

  private async claimCap(
    phoneNumberId: string,
    mps: number,
    notBefore: number,
    maxWaitMs?: number,
    /**
     * For a send that leaves as soon as the claim is answered, expected in `answerInMs`: the slot
     * under way then is taken if at most half the tolerance of it will have passed by then.
     */
    current?: { answerInMs: number },
  ): Promise<Claimed> {
    const width = capSlotMs(mps);
    // The hint is a slot number of this width: after an operator changes the number's cap, a hint
    // of the old width would point years away (or into the past).
    const hintKey = `${phoneNumberId}@${mps}`;
    for (;;) {
      const now = this.clock.now();
      const t = Math.max(now + (current?.answerInMs ?? 0), notBefore);
      const under = Math.floor(t / width);
      const first = current && t - under * width <= LATE_TOLERANCE_MS / 2 ? under : Math.ceil(t / width);
      const k = Math.max(first, (this.capHint.get(hintKey) ?? -1) + 1);
      const at = k * width;
      if (maxWaitMs !== undefined && at - now > maxWaitMs) return { kind: 'later', retryAfterMs: at - now };
      this.capHint.set(hintKey, k);
      if ((await this.timedClaim(now, `${phoneNumberId}:${k}`, (k + 1) * width)) === 'claimed') {
        return { kind: 'reserved', at, notBefore: -Infinity };
      }
    }
  }

  /**
   * A send to a recipient: the lowest free pair slot of the recipient from the current interval on,
   * and the first free cap slot of the number at or after the moment that pair slot lets it leave,
   * claimed together by one insert (the cap slot's document names the pair slot: one write
   * statement, not two). A refused claim says which slot was taken; only that one moves on (the
   * hint of the other is given back, so a free slot is not skipped).
   */
  private async claimCapAndPair(
    phoneNumberId: string,
    mps: number,
    to: string,
    notBefore: number,
    maxWaitMs?: number,
  ): Promise<Claimed> {
    const interval = this.pair.intervalMs;
    const ahead = Math.max(1, this.pair.burst - PAIR_BURST_MARGIN) - 1;
    const key = pairKey(phoneNumberId, to);
    const recipientPause = await this.pairPausedUntil(phoneNumberId, to);
    const earliest = Math.max(notBefore, recipientPause);
    const width = capSlotMs(mps);
    const capHintKey = `${phoneNumberId}@${mps}`;
    /** The last cap slot this call found taken (a deferred claim moves on from it, not from the hint). */
    let taken = -1;
    for (;;) {
      const now = this.clock.now();
      const base = Math.floor(Math.max(now, earliest) / interval);
      const j = Math.max(base, (this.pairHint.get(key) ?? -1) + 1);
      // What the recipient allows (its pause, this pair slot), and with the caller's own bound.
      const recipientAt = Math.max(recipientPause, (j - ahead) * interval);
      const pairAt = Math.max(notBefore, recipientAt);
      const hinted = Math.max(Math.ceil(Math.max(now, notBefore) / width), (this.capHint.get(capHintKey) ?? -1) + 1);
      const k = Math.max(hinted, Math.ceil(pairAt / width), taken + 1);
      // Deferred by the recipient (its pause or its pair slots), not by the number: the number's
      // hint stays where it is, or every later send of the number, to any recipient, would be
      // claimed after this one (a recipient's 131056 back-off of up to 1,024 s held the whole
      // number back that long).
      const deferred = k > hinted;
      const at = k * width;
      if (maxWaitMs !== undefined && at - now > maxWaitMs) return { kind: 'later', retryAfterMs: at - now };
      if (this.pairHint.size > 10_000) this.prunePairHints(base);
      this.pairHint.set(key, j);
      if (!deferred) this.capHint.set(capHintKey, k);
      const expiresAt = Math.max((k + 1) * width, (j + 1) * interval);
      const claim = await this.timedClaim(now, `${phoneNumberId}:${k}`, expiresAt, `${key}:${j}`);
      if (claim === 'claimed') return { kind: 'reserved', at, notBefore: recipientAt };
      if (claim === 'cap_taken') taken = k;
      // The slot that was free stays this process's next try (unless a later claim moved past it).
      if (claim === 'cap_taken' && this.pairHint.get(key) === j) this.pairHint.set(key, j - 1);
      if (claim === 'pair_taken' && !deferred && this.capHint.get(capHintKey) === k)
        this.capHint.set(capHintKey, k - 1);
    }
  }

  /** One claim (src/sending/slots.store.ts), its time kept in the moving average `claimMs`. */
  private async timedClaim(startedAt: number, id: string, expiresAt: number, pair?: string): Promise<SlotClaim> {
    const claim = await claimSlot(this.c, id, expiresAt, pair);
    // How long a claim takes here now (database and event loop): a moving average, from the first
    // claim's time (from 0, it took a dozen claims to reach a slow database's 120 ms, and each
    // late send meanwhile aimed at a slot that had passed by the answer).
    const took = Math.max(0, this.clock.now() - startedAt);
    this.claimMs = this.claimMs === undefined ? took : this.claimMs + (took - this.claimMs) / 8;
    return claim;
  }

  private prunePairHints(currentSlot: number): void {
    for (const [key, j] of this.pairHint) if (j < currentSlot) this.pairHint.delete(key);
  }
}

function pairKey(phoneNumberId: string, to: string): string {
  return `${phoneNumberId}>${to}`;
}
