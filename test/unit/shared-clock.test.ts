import { createLogger } from '../../src/logger';
import { CLOCK_ERROR_MS, type Clock } from '../../src/sending/pacing';
import { SharedClock, startSharedClock, type ClockStatus } from '../../src/sending/shared-clock';

/**
 * A true time `t` that only the test moves: the worker's own clock reads `t + skew`, the database
 * server answers `floor(t)` after the request's way there and before its way back.
 */
function world(skewMs: number) {
  const w = { t: 1_800_000_000_000.25, up: [1] as number[], down: [1] as number[], fail: false, reads: 0 };
  const local: Clock = { now: () => w.t + skewMs, sleep: async () => undefined };
  const readShared = async (): Promise<number> => {
    const i = w.reads++;
    if (w.fail) throw new Error('database unreachable');
    w.t += w.up[i % w.up.length]!;
    const server = Math.floor(w.t);
    w.t += w.down[i % w.down.length]!;
    return server;
  };
  return { w, local, readShared };
}

describe('the pacing clock (the database server clock, as a worker measures it)', () => {
  it.each([-1_000, -350, 0, 700, 1_000])(
    'a worker whose own clock is %i ms off reads the database clock within the error bound it reports',
    async (skew) => {
      const { w, local, readShared } = world(skew);
      w.up = [3, 1, 0.4, 2];
      w.down = [0.2, 4, 0.6, 1];
      const clock = new SharedClock(readShared, local);
      const status = await clock.sync(4);
      expect(status.alerting).toBe(false);
      // The fastest of the four round trips (1 ms) counts: error ≤ 0.5 + 0.5.
      expect(status.errorMs).toBeCloseTo(1, 5);
      expect(Math.abs(clock.now() - w.t)).toBeLessThanOrEqual(status.errorMs);
      expect(status.errorMs).toBeLessThanOrEqual(CLOCK_ERROR_MS);
    },
  );

  it('two workers a second apart agree on the time within twice the tolerance, however the trips are split', async () => {
    const a = world(-400);
    const b = world(600);
    a.w.up = [2.5];
    a.w.down = [0.1]; // all of the trip on the way there: the worst case for the estimate
    b.w.up = [0.1];
    b.w.down = [2.5]; // all of it on the way back
    const ca = new SharedClock(a.readShared, a.local);
    const cb = new SharedClock(b.readShared, b.local);
    await ca.sync(3);
    await cb.sync(3);
    b.w.t = a.w.t; // the same true instant
    expect(Math.abs(ca.now() - cb.now())).toBeLessThanOrEqual(2 * CLOCK_ERROR_MS);
    expect(Math.abs(ca.now() - cb.now())).toBeLessThanOrEqual(ca.status().errorMs + cb.status().errorMs);
  });

  it('alerts when no reading is within the tolerance, keeps the best one it has, and clears once one is', async () => {
    const { w, local, readShared } = world(800);
    w.up = [10];
    w.down = [10]; // a 20 ms round trip: error bound 10.5 ms
    const statuses: ClockStatus[] = [];
    const lines: { level: number; msg: string; alert?: boolean }[] = [];
    const logger = createLogger('info', 'test', {
      write: (line: string) => void lines.push(JSON.parse(line) as (typeof lines)[number]),
    });
    const clock = await startSharedClock({ readShared, local, logger, onStatus: (s) => statuses.push(s) });
    clock.stop();
    expect(statuses.at(-1)).toMatchObject({ alerting: true, errorMs: 10.5 });
    // Used all the same: 800 ms off is far worse than 10.5 ms.
    expect(Math.abs(clock.now() - w.t)).toBeLessThanOrEqual(10.5);
    expect(lines.filter((l) => l.alert === true && l.level === 50)).toHaveLength(1);

    // A worse reading does not replace it; a good one does and clears the alert.
    w.up = [15];
    await clock.sync();
    expect(clock.status().errorMs).toBe(10.5);
    expect(lines.filter((l) => l.alert === true)).toHaveLength(1); // not repeated
    w.up = [0.5];
    w.down = [0.5];
    const ok = await clock.sync();
    expect(ok).toMatchObject({ alerting: false, errorMs: 1 });
    expect(Math.abs(clock.now() - w.t)).toBeLessThanOrEqual(1);
    expect(lines.filter((l) => l.alert === false)).toHaveLength(1);
  });

  it('a slow first round at start (a busy start-up) is read again before it alerts', async () => {
    const { w, local, readShared } = world(500);
    w.up = [...Array<number>(8).fill(10), 0.5];
    w.down = [...Array<number>(8).fill(10), 0.5]; // the 9th reading, in the second round, is fast
    const lines: { level: number }[] = [];
    const logger = createLogger('info', 'test', { write: (line: string) => void lines.push(JSON.parse(line)) });
    const clock = await startSharedClock({ readShared, local, logger });
    clock.stop();
    expect(clock.status().alerting).toBe(false);
    expect(lines.filter((l) => l.level >= 50)).toEqual([]);
  });

  it('a database it cannot read at start leaves the own clock in use and alerting; the next sync corrects it', async () => {
    const { w, local, readShared } = world(-900);
    w.fail = true;
    const clock = new SharedClock(readShared, local);
    expect(await clock.sync()).toMatchObject({ alerting: true, errorMs: Infinity, offsetMs: 0 });
    expect(clock.now() - w.t).toBeCloseTo(-900, 5);
    w.fail = false;
    expect((await clock.sync()).alerting).toBe(false);
    expect(Math.abs(clock.now() - w.t)).toBeLessThanOrEqual(1.5);
    // Later failures keep the last reading.
    w.fail = true;
    expect((await clock.sync()).alerting).toBe(false);
    expect(Math.abs(clock.now() - w.t)).toBeLessThanOrEqual(1.5);
  });

  it('a reading left unrefreshed for minutes alerts (stale)', async () => {
    const { w, local, readShared } = world(0);
    const clock = new SharedClock(readShared, local);
    expect((await clock.sync()).alerting).toBe(false);
    w.fail = true;
    w.t += 6 * 60_000;
    expect(await clock.sync()).toMatchObject({ alerting: true, reason: expect.stringContaining('min') });
  });

  it('a database clock stepped between two syncs is followed at the next one, and the move is logged', async () => {
    const { w, local, readShared } = world(250);
    let step = 0;
    const lines: { level: number; msg: string; movedMs?: number }[] = [];
    const logger = createLogger('info', 'test', {
      write: (line: string) => void lines.push(JSON.parse(line) as (typeof lines)[number]),
    });
    const clock = await startSharedClock({ readShared: async () => (await readShared()) + step, local, logger });
    clock.stop();
    step = 300;
    await clock.sync();
    expect(Math.abs(clock.now() - (w.t + 300))).toBeLessThanOrEqual(1.5);
    expect(lines.filter((l) => l.level === 40).map((l) => l.movedMs)).toEqual([300]);
  });
});
