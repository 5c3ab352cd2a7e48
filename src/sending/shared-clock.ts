import type { Logger } from '../logger';
import { CLOCK_ERROR_MS, realClock, type Clock } from './pacing';

/**
 * The clock pacing numbers its slots on: the database server's clock, as each worker process
 * estimates it. Slot `k` of a number is the same instant for every worker only if they agree on
 * the time; their own clocks may be apart by a second or more (no NTP, a VM resumed, a process
 * started before a clock step: `realClock` follows the monotonic clock and never sees a step), and
 * Meta judges the cap on its own clock. So each worker reads the database server's clock (`hello`
 * answers `localTime`, on MongoDB and on FerretDB v1.24) a few times at start and every
 * `CLOCK_SYNC_PERIOD_MS`, and pacing runs on its own clock plus the measured offset.
 *
 * One reading: the server's time against the midpoint of the request's round trip. Its error is
 * at most half the round trip (the whole trip spent on one leg) plus half a millisecond (the
 * server answers in whole ms): the round trip bounds it, which is why the fastest of several
 * readings is kept. Two workers then disagree by at most the sum of their errors; the cap's slot
 * width pays for `CLOCK_ERROR_MS` each way (src/sending/pacing.ts, `capSlotMs`).
 *
 * Cost: `hello` (the cheapest command there is: the drivers' own monitors send it every 10 s),
 * `CLOCK_SYNC_START_SAMPLES` at start, `CLOCK_SYNC_SAMPLES` every period: about 0.2 reads a second
 * per worker process, nothing per send, no write.
 */

/** How often a worker reads the database server's clock again (drift, clock steps, a new primary). */
export const CLOCK_SYNC_PERIOD_MS = 15_000;
/** Readings at start (the fastest one counts) … */
export const CLOCK_SYNC_START_SAMPLES = 8;
/** … in up to this many rounds while none is within `CLOCK_ERROR_MS`. */
export const CLOCK_SYNC_START_ROUNDS = 3;
/** Readings at each later sync. */
export const CLOCK_SYNC_SAMPLES = 3;
/** With no reading within `CLOCK_ERROR_MS` for this long, the offset in use is stale: alert. */
export const CLOCK_STALE_AFTER_MS = 5 * 60_000;

/** One estimate of the shared clock. */
export interface ClockReading {
  /** Shared clock minus this process's own clock, ms. */
  offsetMs: number;
  /** Bound on the estimate's error, ms (half the round trip plus half the server's resolution). */
  errorMs: number;
  /** This process's own clock when the reading was taken. */
  at: number;
}

/** What `SharedClock` reports after each sync: the reading in use and whether caps are at risk. */
export interface ClockStatus {
  offsetMs: number;
  /** The reading in use's error bound; Infinity while there is none. */
  errorMs: number;
  /** True while the error bound exceeds `CLOCK_ERROR_MS`, no reading succeeded, or the one in use is stale. */
  alerting: boolean;
  /** Why it alerts, for the log line. */
  reason?: string;
}

/** Reads the shared clock once: epoch ms (whole ms, truncated, as MongoDB and FerretDB answer). */
export type ReadSharedClock = () => Promise<number>;

/**
 * `Clock` whose `now()` is the shared clock as this process estimates it (own clock + offset);
 * `sleep` is the own clock's (durations need no correction). Before the first successful sync
 * the offset is 0: the process's own clock, alerting.
 */
export class SharedClock implements Clock {
  private reading: ClockReading | undefined;
  private timer: NodeJS.Timeout | undefined;
  private syncing: Promise<ClockStatus> | undefined;

  constructor(
    private readonly readShared: ReadSharedClock,
    private readonly local: Clock = realClock,
    private readonly onStatus: (status: ClockStatus, previous: ClockReading | undefined) => void = () => undefined,
  ) {}

  now(): number {
    return this.local.now() + (this.reading?.offsetMs ?? 0);
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return this.local.sleep(ms, signal);
  }

  /** The reading in use, if any. */
  current(): ClockReading | undefined {
    return this.reading;
  }

  /** Where the clock stands now (for the start-up check, the metrics and tests). */
  status(): ClockStatus {
    const r = this.reading;
    if (!r) return { offsetMs: 0, errorMs: Infinity, alerting: true, reason: 'the database clock could not be read' };
    if (r.errorMs > CLOCK_ERROR_MS)
      return {
        offsetMs: r.offsetMs,
        errorMs: r.errorMs,
        alerting: true,
        reason: `the best reading's error bound exceeds ${CLOCK_ERROR_MS} ms (a slow or distant database)`,
      };
    if (this.local.now() - r.at > CLOCK_STALE_AFTER_MS)
      return {
        offsetMs: r.offsetMs,
        errorMs: r.errorMs,
        alerting: true,
        reason: `no reading within ${CLOCK_ERROR_MS} ms for ${CLOCK_STALE_AFTER_MS / 60_000} min`,
      };
    return { offsetMs: r.offsetMs, errorMs: r.errorMs, alerting: false };
  }

  /**
   * Takes `samples` readings one after another and keeps the fastest; it replaces the reading in
   * use when its error is within `CLOCK_ERROR_MS` or smaller than the one in use. A failed read
   * keeps the previous reading. Never throws.
   */
  sync(samples = CLOCK_SYNC_SAMPLES): Promise<ClockStatus> {
    this.syncing ??= this.readBest(samples).finally(() => (this.syncing = undefined));
    return this.syncing;
  }

  /** Syncs every `periodMs` until `stop()` (the timer does not keep the process alive). */
  start(periodMs = CLOCK_SYNC_PERIOD_MS): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.sync(), periodMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private async readBest(samples: number): Promise<ClockStatus> {
    let best: ClockReading | undefined;
    for (let i = 0; i < samples; i++) {
      try {
        const t0 = this.local.now();
        const server = await this.readShared();
        const t1 = this.local.now();
        const reading = { offsetMs: server + 0.5 - (t0 + t1) / 2, errorMs: (t1 - t0) / 2 + 0.5, at: t1 };
        if (!best || reading.errorMs < best.errorMs) best = reading;
      } catch {
        // An unreachable database: the next sample, or the next sync.
      }
    }
    const previous = this.reading;
    if (best && (!previous || best.errorMs <= CLOCK_ERROR_MS || best.errorMs < previous.errorMs)) this.reading = best;
    const status = this.status();
    this.onStatus(status, previous);
    return status;
  }
}

/**
 * The worker's pacing clock: reads the database server's clock at start (the start-up check),
 * then every `CLOCK_SYNC_PERIOD_MS`. Alerts (one `error` line with `alert: true`, and `onStatus`
 * for the metrics) when the error bound exceeds what the caps tolerate, and logs when the offset
 * moves by more than that between two readings (a clock was stepped, or drifts fast).
 */
export async function startSharedClock(deps: {
  readShared: ReadSharedClock;
  logger: Logger;
  onStatus?: (status: ClockStatus) => void;
  /** This process's own clock (tests give one set apart from the host's). */
  local?: Clock;
  periodMs?: number;
}): Promise<SharedClock> {
  const { logger } = deps;
  const fieldsOf = (status: ClockStatus) => ({
    offsetMs: Math.round(status.offsetMs),
    errorBoundMs: Number.isFinite(status.errorMs) ? Math.round(status.errorMs * 10) / 10 : null,
    toleranceMs: CLOCK_ERROR_MS,
  });
  let alerting = false;
  const report = (status: ClockStatus): void => {
    deps.onStatus?.(status);
    if (status.alerting && !alerting) {
      alerting = true;
      logger.error(
        { alert: true, ...fieldsOf(status), reason: status.reason },
        'pacing clock: this worker cannot tell the database clock within the tolerance; caps may be exceeded across workers (130429, retried)',
      );
    } else if (!status.alerting && alerting) {
      alerting = false;
      logger.info({ alert: false, ...fieldsOf(status) }, 'pacing clock back within the tolerance');
    }
  };
  let starting = true;
  const clock = new SharedClock(deps.readShared, deps.local, (status, previous) => {
    if (starting) return; // judged once the start-up rounds are over
    report(status);
    const now = clock.current();
    if (previous && now && now !== previous && Math.abs(now.offsetMs - previous.offsetMs) > 2 * CLOCK_ERROR_MS) {
      logger.warn(
        { ...fieldsOf(status), movedMs: Math.round(now.offsetMs - previous.offsetMs) },
        'pacing clock: the offset to the database clock moved (a clock was stepped, or drifts fast); corrected',
      );
    }
  });
  // The start-up check. A busy start (bundling, connections opening) slows round trips: a few
  // more rounds before alerting.
  let status = await clock.sync(CLOCK_SYNC_START_SAMPLES);
  for (let round = 1; round < CLOCK_SYNC_START_ROUNDS && status.alerting; round++)
    status = await clock.sync(CLOCK_SYNC_START_SAMPLES);
  starting = false;
  logger.info(fieldsOf(status), 'pacing clock: slots numbered on the database clock');
  report(status);
  clock.start(deps.periodMs);
  return clock;
}
