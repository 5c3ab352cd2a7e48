import { randomBytes } from 'node:crypto';
import type { Db, MongoClient } from 'mongodb';
import { connectMongo, readServerTime, type Collections } from '../../src/adapters/store/db';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { LATE_TOLERANCE_MS, SharedPacer, maxSendsPerWindow, realClock, type Clock } from '../../src/sending/pacing';
import { SharedClock } from '../../src/sending/shared-clock';
import { startMetaSimulator } from '../../tools/meta-sim/server';

/** The shared limiter against the real MongoDB-wire server: two "workers" are two clients and two pacers. */
describe('shared pacing across processes', () => {
  const dbName = `pacing_${randomBytes(4).toString('hex')}`;
  let conns: { client: MongoClient; db: Db; c: Collections }[] = [];
  beforeAll(async () => {
    conns = [
      await connectMongo(process.env.MONGODB_URI!, dbName),
      await connectMongo(process.env.MONGODB_URI!, dbName),
    ];
  });
  afterAll(async () => {
    await conns[0]?.client
      .db(dbName)
      .dropDatabase()
      .catch(() => undefined);
    for (const conn of conns) await conn.client.close();
  });

  const maxInWindow = (times: number[], windowMs: number): number => {
    const sorted = [...times].sort((a, b) => a - b);
    let best = 0;
    for (let i = 0, j = 0; i < sorted.length; i++) {
      while (sorted[i]! - sorted[j]! >= windowMs) j++;
      best = Math.max(best, i - j + 1);
    }
    return best;
  };

  it('two workers sending one number at once never put more than the cap into any second', async () => {
    const phone = 'p' + randomBytes(4).toString('hex');
    const pacers = conns.map((conn) => new SharedPacer(conn.c, { burst: 45, intervalMs: 0 }));
    const departures: number[] = [];
    // This process's own event-loop lag: a departure is stamped here that much after the pacer let it go.
    const lag = monitorEventLoopDelay({ resolution: 10 });
    lag.enable();
    await Promise.all(
      pacers.flatMap((pacer, w) =>
        Array.from({ length: 30 }, async (_, i) => {
          const got = await pacer.take({ phoneNumberId: phone, mps: 10, to: `${w}-${i}` });
          expect(got.kind).toBe('reserved');
          departures.push(Date.now());
        }),
      ),
    );
    lag.disable();
    for (const p of pacers) p.close();
    expect(departures).toHaveLength(60);
    // The pacer's contract: each send leaves within LATE_TOLERANCE_MS of its slot's start, so any
    // second holds at most the cap (10) as the pacer sees it. Stamped here, a departure can also be
    // late by this process's event-loop lag (2 cores, other test files running): the bound allows
    // exactly that much more, and is the cap itself while the lag stays under about 80 ms. (The
    // cap at the receiver is judged by the simulator: multi-worker, faults and power-cut tests.)
    const lagMs = lag.max / 1e6;
    const most = maxInWindow(departures, 1000);
    console.log(
      `pacing, two pacers at 10 msg/s: at most ${most} departures in any 1,000 ms; event-loop lag ≤ ${lagMs.toFixed(0)} ms`,
    );
    expect(most).toBeLessThanOrEqual(maxSendsPerWindow(10, 1000, LATE_TOLERANCE_MS + lagMs));
    // 60 sends at 10 msg/s (slots at ≥ 87% of it): at least 6 s, never twice as fast; slower
    // when a busy machine makes sends miss their slots (each then takes a later one).
    const span = Math.max(...departures) - Math.min(...departures);
    expect(span).toBeGreaterThan(5_500);
    expect(span).toBeLessThan(15_000);
  });

  /** This process's clock set `skewMs` off: a worker on another host whose clock is that far from the truth. */
  const skewed = (skewMs: number): Clock => ({ now: () => realClock.now() + skewMs, sleep: realClock.sleep });

  /**
   * Two workers, each with its own pacer and clock (`clocks[w]`), send 30 messages each to one
   * number at Meta's coexistence cap (20/s) through the simulator, which judges the cap on its own
   * clock (this host's: the truth here) on a strict 1,000 ms sliding window. Returns its 130429
   * answers and the most departures in any 1,000 ms on the true clock.
   */
  async function twoWorkersAtTheCap(clocks: [Clock, Clock]) {
    const phone = 'p' + randomBytes(4).toString('hex');
    const sim = await startMetaSimulator({ numbers: { [phone]: { throughputPerSec: 20 } } });
    const pacers = conns.map((conn, w) => new SharedPacer(conn.c, { burst: 45, intervalMs: 0 }, clocks[w]));
    const departures: number[] = [];
    const lag = monitorEventLoopDelay({ resolution: 10 });
    lag.enable();
    try {
      await Promise.all(
        pacers.flatMap((pacer, w) =>
          Array.from({ length: 30 }, async (_, i) => {
            const to = `1555${w}00${String(i).padStart(4, '0')}`;
            const got = await pacer.take({ phoneNumberId: phone, mps: 20, to });
            expect(got.kind).toBe('reserved');
            departures.push(Date.now());
            await fetch(`${sim.url}/v25.0/${phone}/messages`, {
              method: 'POST',
              headers: { authorization: 'Bearer t', 'content-type': 'application/json' },
              body: JSON.stringify({ messaging_product: 'whatsapp', to, type: 'text', text: { body: `${w}-${i}` } }),
            });
          }),
        ),
      );
      const stats = sim.receiverStats(phone);
      expect(stats.accepted + stats.throttled).toBe(60);
      return { throttled: stats.throttled, most: maxInWindow(departures, 1000), lagMs: lag.max / 1e6 };
    } finally {
      lag.disable();
      for (const p of pacers) p.close();
      await sim.stop();
    }
  }

  it('two workers whose clocks are 800 ms apart hold the cap at the receiver: slots are numbered on the database clock', async () => {
    const clocks = await Promise.all(
      conns.map(async (conn, w) => {
        const clock = new SharedClock(() => readServerTime(conn.db), skewed(w === 0 ? -400 : 400));
        const status = await clock.sync(8);
        expect(status.alerting).toBe(false); // the database is on this host: well within the tolerance
        return clock;
      }),
    );
    expect(Math.abs(clocks[0]!.now() - clocks[1]!.now())).toBeLessThan(2 * 4 + 1);
    const { throttled, most, lagMs } = await twoWorkersAtTheCap([clocks[0]!, clocks[1]!]);
    console.log(
      `pacing, two workers 800 ms apart on the database clock: ${throttled} × 130429, at most ${most} departures in any 1,000 ms; event-loop lag ≤ ${lagMs.toFixed(0)} ms`,
    );
    expect(throttled).toBe(0);
    expect(most).toBeLessThanOrEqual(maxSendsPerWindow(20, 1000, LATE_TOLERANCE_MS + lagMs));
  });

  it('numbered on each worker own clock instead (the design before), the same two workers put more than the cap into some second', async () => {
    const { throttled, most } = await twoWorkersAtTheCap([skewed(-400), skewed(400)]);
    console.log(
      `pacing, two workers 800 ms apart on their own clocks: ${throttled} × 130429, at most ${most} in 1,000 ms`,
    );
    // Over the cap where Meta judges it: the simulator refuses some (130429), or some second on the
    // true clock holds more than the cap. Either alone depends on timing: fresh-clone runs saw
    // 6 × 130429 with 24 in a second, 4 with 23, and 2 with exactly 20 (arrival jitter pushed two
    // over the receiver's strict window while the departures, counted here, stayed at the cap).
    expect(throttled > 0 || most > 20).toBe(true);
  });

  it('a process whose timers fire late and whose claims take longer than the tolerance still sends, each send taking a new slot a few times at most', async () => {
    const phone = 'p' + randomBytes(4).toString('hex');
    // Every timer wakes 120 ms late: past LATE_TOLERANCE_MS, so no slot slept to is ever met.
    const lateClock = {
      now: () => Date.now(),
      sleep: (ms: number) => new Promise<void>((resolve) => (ms <= 0 ? resolve() : setTimeout(resolve, ms + 120))),
    };
    // And the database takes 120 ms to answer a claim: longer than the tolerance too.
    const base = conns[0]!.c;
    const slow = {
      ...base,
      sendSlots: new Proxy(base.sendSlots, {
        get: (target, prop, receiver) =>
          prop === 'insertOne'
            ? async (...a: Parameters<typeof target.insertOne>) => {
                await new Promise((r) => setTimeout(r, 120));
                return target.insertOne(...a);
              }
            : Reflect.get(target, prop, receiver),
      }),
    };
    const pacer = new SharedPacer(slow, { burst: 45, intervalMs: 0 }, lateClock);
    const started = Date.now();
    for (const mps of [80, 20]) {
      for (let i = 0; i < 5; i++) {
        const got = await pacer.take({ phoneNumberId: `${phone}-${mps}`, mps, to: `r${i}` });
        expect(got.kind).toBe('reserved');
      }
    }
    pacer.close();
    // Before: each late wake claimed the next slot and slept to it, late again, without end: the
    // first send never left (the time bound). Now each send takes a new slot a few times: 22-23 for
    // the 10 sends with this file alone, 42 in one full run on the loaded 2-core CI machine (its own
    // lateness on top of the simulated 120 ms), so at most 6 each.
    expect(Date.now() - started).toBeLessThan(20_000);
    console.log(`pacing, late timers and slow claims: ${pacer.lateDepartures} new slots for 10 sends`);
    expect(pacer.lateDepartures).toBeLessThanOrEqual(60);
  });

  it("a number whose cap an operator changes gets its next slot within a slot's width, not years away", async () => {
    const phone = 'p' + randomBytes(4).toString('hex');
    const pacer = new SharedPacer(conns[0]!.c, { burst: 45, intervalMs: 0 });
    const first = await pacer.reserve({ phoneNumberId: phone, mps: 1000, to: 'a', maxWaitMs: 30_000 });
    expect(first.kind).toBe('reserved');
    if (first.kind === 'reserved') first.reservation.done();
    // Cap lowered from 1,000 to 1 msg/s: the old width's slot number must not carry over.
    const second = await pacer.reserve({ phoneNumberId: phone, mps: 1, to: 'b', maxWaitMs: 30_000 });
    expect(second.kind).toBe('reserved');
    if (second.kind === 'reserved') {
      expect(second.reservation.at - Date.now()).toBeLessThan(2_000);
      second.reservation.done();
    }
    pacer.close();
  });

  it('holds the pair limit across workers and a pause seen by one worker stops the other', async () => {
    const phone = 'p' + randomBytes(4).toString('hex');
    const pair = { burst: 5, intervalMs: 1_000 };
    const [a, b] = conns.map((conn) => new SharedPacer(conn.c, pair));
    const starts: number[] = [];
    const t0 = Date.now();
    await Promise.all(
      [a!, b!].flatMap((pacer) =>
        Array.from({ length: 4 }, async () => {
          await pacer.take({ phoneNumberId: phone, mps: 100, to: '15550001111' });
          starts.push(Date.now() - t0);
        }),
      ),
    );
    // burst 5 (kept 3 back: 2 at once), then one per second: 8 sends take at least 5 s.
    starts.sort((x, y) => x - y);
    expect(starts[starts.length - 1]!).toBeGreaterThanOrEqual(4_900);
    // Meta's token bucket: any k consecutive sends need k ≤ burst + span / interval. The times are
    // read here after each take() resolves, so allow 50 ms of this process's own scheduling jitter.
    for (let i = 0; i < starts.length; i++)
      for (let k = i + 1; k < starts.length; k++)
        expect(k - i + 1).toBeLessThanOrEqual(pair.burst - 1 + (starts[k]! - starts[i]! + 50) / pair.intervalMs);

    await a!.pause(phone, 1_500);
    await new Promise((r) => setTimeout(r, 150)); // b trusts its last read of the pauses for 100 ms
    const before = Date.now();
    await b!.take({ phoneNumberId: phone, mps: 100 });
    expect(Date.now() - before).toBeGreaterThanOrEqual(1_200);
    a!.close();
    b!.close();
  }, 30_000);
});
