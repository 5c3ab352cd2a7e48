/**
 * Pacing for Cloud API sends, per worker process: one `RateLimiter` per phone number (Meta's
 * per-number throughput cap) and one `PairLimiter` per WABA drain (Meta's pair rate limit per
 * recipient). Both hand out start times; callers wait for them.
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

/**
 * Starts are spaced this much wider than `1000 / mps` ms: requests reach Meta with some jitter,
 * and a send that arrives a little early must still not make a second hold `mps + 1` messages.
 */
export const CAP_MARGIN = 1.03;

/**
 * Spaces starts `CAP_MARGIN × 1000 / mps` ms apart, so no window of one second ever holds more
 * than `mps` starts (Meta answers 130429 above the cap). `pause(ms)` pushes every later start
 * back, for Meta's own throttling answer.
 */
export class RateLimiter {
  private next = 0;
  private intervalMs: number;
  private mps: number;
  /** The last `mps` departure times, oldest first. */
  private readonly departures: number[] = [];
  private gate: Promise<void> = Promise.resolve();

  constructor(
    mps: number,
    private readonly clock: Clock = realClock,
  ) {
    this.mps = mps;
    this.intervalMs = (CAP_MARGIN * 1000) / mps;
  }

  /** Changes the cap (the registry may be edited while a drain runs). */
  setRate(mps: number): void {
    this.mps = mps;
    this.intervalMs = (CAP_MARGIN * 1000) / mps;
  }

  /**
   * The last check before a request leaves: waits until one more departure keeps every one-second
   * window at or under the cap, counting actual departures (a late timer or a busy event loop can
   * bunch reserved slots together), then records it. Callers pass in the order they should leave.
   */
  admit(signal?: AbortSignal): Promise<void> {
    const turn = this.gate.then(async () => {
      const cap = Math.max(1, Math.floor(this.mps));
      for (;;) {
        const oldest = this.departures.length >= cap ? this.departures[this.departures.length - cap]! : undefined;
        // A window slightly over a second (the same margin as the spacing) absorbs network jitter.
        const wait = oldest === undefined ? 0 : oldest + 1000 * CAP_MARGIN - this.clock.now();
        if (wait <= 0) break;
        await this.clock.sleep(wait, signal);
        if (signal?.aborted) return;
      }
      this.departures.push(this.clock.now());
      if (this.departures.length > cap) this.departures.splice(0, this.departures.length - cap);
    });
    this.gate = turn.catch(() => undefined);
    return turn;
  }

  /** Reserves the next start slot and returns its time (epoch ms); the caller waits for it. */
  reserve(): number {
    const at = Math.max(this.clock.now(), this.next);
    this.next = at + this.intervalMs;
    return at;
  }

  /** Reserves the next start slot, waits for it, then `admit`s. Resolves early (without sending) on abort. */
  async take(signal?: AbortSignal): Promise<void> {
    const at = this.reserve();
    await this.clock.sleep(at - this.clock.now(), signal);
    await this.admit(signal);
  }

  /** Nothing starts for `ms` from now. */
  pause(ms: number): void {
    this.next = Math.max(this.next, this.clock.now() + ms);
  }
}

/**
 * Meta's pair rate limit: a recipient may take a burst of `burst` messages, then one per
 * `intervalMs` (a token bucket). `reserve(to)` books the recipient's next slot and says how long to
 * wait for it; `penalize(to, ms)` pushes the recipient back after a 131056 answer.
 */
export class PairLimiter {
  private readonly buckets = new Map<string, { tokens: number; updatedAt: number; blockedUntil: number }>();

  constructor(
    private readonly burst: number,
    private readonly intervalMs: number,
    private readonly clock: Clock = realClock,
  ) {}

  /** Books one message to `to`; returns the milliseconds to wait before sending it. */
  reserve(to: string): number {
    if (this.intervalMs <= 0) return 0;
    const now = this.clock.now();
    const b = this.buckets.get(to) ?? { tokens: this.burst, updatedAt: now, blockedUntil: 0 };
    b.tokens = Math.min(this.burst, b.tokens + (now - b.updatedAt) / this.intervalMs);
    b.updatedAt = now;
    b.tokens -= 1;
    this.buckets.set(to, b);
    const tokenWait = b.tokens >= 0 ? 0 : -b.tokens * this.intervalMs;
    return Math.max(tokenWait, b.blockedUntil - now);
  }

  penalize(to: string, ms: number): void {
    const now = this.clock.now();
    const b = this.buckets.get(to) ?? { tokens: 0, updatedAt: now, blockedUntil: 0 };
    b.blockedUntil = Math.max(b.blockedUntil, now + ms);
    this.buckets.set(to, b);
  }
}

/** Registry of per-number limiters shared by the direct send path and the drains of one worker. */
export class RateLimiters {
  private readonly byNumber = new Map<string, RateLimiter>();

  constructor(private readonly clock: Clock = realClock) {}

  for(phoneNumberId: string, mps: number): RateLimiter {
    let limiter = this.byNumber.get(phoneNumberId);
    if (!limiter) {
      limiter = new RateLimiter(mps, this.clock);
      this.byNumber.set(phoneNumberId, limiter);
    } else limiter.setRate(mps);
    return limiter;
  }
}
