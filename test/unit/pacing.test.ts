import { CAP_MARGIN, PairLimiter, RateLimiter, type Clock } from '../../src/sending/pacing';

function fakeClock(): Clock & { t: number } {
  const clock = {
    t: 1_000_000,
    now: () => clock.t,
    sleep: async (ms: number) => {
      clock.t += Math.max(0, ms);
    },
  };
  return clock;
}

describe('RateLimiter', () => {
  it('spaces starts 1/mps apart, so no second ever holds more than the cap', async () => {
    const clock = fakeClock();
    const limiter = new RateLimiter(20, clock);
    const starts: number[] = [];
    for (let i = 0; i < 100; i++) {
      await limiter.take();
      starts.push(clock.t);
    }
    for (let i = 20; i < starts.length; i++) expect(starts[i]! - starts[i - 20]!).toBeGreaterThanOrEqual(1000);
    expect(starts[99]! - starts[0]!).toBeCloseTo(99 * 50 * CAP_MARGIN, 5);
  });

  it('reserves slots in call order and pushes them back after pause()', () => {
    const clock = fakeClock();
    const limiter = new RateLimiter(10, clock);
    const a = limiter.reserve();
    const b = limiter.reserve();
    expect(b - a).toBeCloseTo(100 * CAP_MARGIN, 5);
    limiter.pause(5_000);
    expect(limiter.reserve()).toBeGreaterThanOrEqual(clock.t + 5_000);
  });
});

describe('RateLimiter.admit', () => {
  it('never lets more than the cap depart in any one-second window, even when slots bunch up', async () => {
    const clock = fakeClock();
    const limiter = new RateLimiter(5, clock);
    // Ten callers whose reserved slots all came due at once (a stalled event loop).
    const departures: number[] = [];
    await Promise.all(Array.from({ length: 10 }, () => limiter.admit().then(() => departures.push(clock.t))));
    departures.sort((a, b) => a - b);
    for (let i = 5; i < departures.length; i++)
      expect(departures[i]! - departures[i - 5]!).toBeGreaterThanOrEqual(1000);
  });
});

describe('PairLimiter', () => {
  it('lets a burst through, then one message per interval to the same recipient', () => {
    const clock = fakeClock();
    const pairs = new PairLimiter(3, 6_000, clock);
    expect([pairs.reserve('a'), pairs.reserve('a'), pairs.reserve('a')]).toEqual([0, 0, 0]);
    expect(pairs.reserve('a')).toBe(6_000);
    expect(pairs.reserve('b')).toBe(0); // other recipients are not held back
  });

  it('holds a recipient back after penalize()', () => {
    const clock = fakeClock();
    const pairs = new PairLimiter(45, 6_000, clock);
    pairs.penalize('a', 16_000);
    expect(pairs.reserve('a')).toBe(16_000);
  });

  it('is off when the interval is 0', () => {
    const pairs = new PairLimiter(1, 0, fakeClock());
    expect([pairs.reserve('a'), pairs.reserve('a')]).toEqual([0, 0]);
  });
});
