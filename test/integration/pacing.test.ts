import { randomBytes } from 'node:crypto';
import type { Db, MongoClient } from 'mongodb';
import { connectMongo, readServerTime, type Collections } from '../../src/adapters/store/db';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { SharedPacer, capSlotMs, realClock, type Clock, type Reservation } from '../../src/sending/pacing';
import { SharedClock } from '../../src/sending/shared-clock';
import { spawnMetaSimulator, type MetaSimulatorProcess } from '../../tools/meta-sim/process';
import { withMethod } from '../support/intercept';

/** The shared limiter against the real MongoDB-wire server: two "workers" are two clients and two pacers. */
describe('shared pacing across processes', () => {
  const dbName = `pacing_${randomBytes(4).toString('hex')}`;
  let conns: { client: MongoClient; db: Db; c: Collections }[] = [];
  /**
   * The receiver, in a process of its own: in this one, its arrival stamps would also wait on this
   * process's event loop (the pacers, their claims, the sends), which Meta's do not.
   */
  let sim: MetaSimulatorProcess;
  beforeAll(async () => {
    sim = await spawnMetaSimulator();
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
    await sim?.stop();
  });

  /** This process's clock set `skewMs` off: a worker on another host whose clock is that far from the truth. */
  const skewed = (skewMs: number): Clock => ({ now: () => realClock.now() + skewMs, sleep: realClock.sleep });

  /**
   * How long this process could not run its timers: the sum of a 10 ms timer's gaps over 40 ms
   * (past such a stall, a send due meanwhile has missed its slot, and the slots that passed are lost).
   */
  function stallMeter(): { stop(): number } {
    let last = performance.now();
    let stalled = 0;
    const timer = setInterval(() => {
      const now = performance.now();
      if (now - last > 40) stalled += now - last - 10;
      last = now;
    }, 10);
    return {
      stop: () => {
        clearInterval(timer);
        return stalled;
      },
    };
  }

  /** One Cloud API text send to the simulator. */
  const post = (url: string, phone: string, to: string, text: string) =>
    fetch(`${url}/v25.0/${phone}/messages`, {
      method: 'POST',
      headers: { authorization: 'Bearer t', 'content-type': 'application/json' },
      body: JSON.stringify({ messaging_product: 'whatsapp', to, type: 'text', text: { body: text } }),
    });

  /**
   * Two workers, each with its own pacer and clock (`clocks[w]`), send 30 messages each to one
   * number capped at `mps` through the simulator, which judges the cap where Meta does: on its own
   * clock (this host's: the truth here), over every send that arrived, on a strict 1,000 ms sliding
   * window. Returns what it received and what the pacers lost to late departures.
   */
  async function twoWorkersAtTheCap(clocks: [Clock, Clock], mps: number) {
    const phone = 'p' + randomBytes(4).toString('hex');
    await sim.setNumber(phone, { throughputPerSec: mps });
    const pacers = conns.map((conn, w) => new SharedPacer(conn.c, { burst: 45, intervalMs: 0 }, clocks[w]));
    const lag = monitorEventLoopDelay({ resolution: 10 });
    lag.enable();
    const stalls = stallMeter();
    try {
      await Promise.all(
        pacers.flatMap((pacer, w) =>
          Array.from({ length: 30 }, async (_, i) => {
            const to = `1555${w}00${String(i).padStart(4, '0')}`;
            const got = await pacer.take({ phoneNumberId: phone, mps, to });
            expect(got.kind).toBe('reserved');
            await post(sim.url, phone, to, `${w}-${i}`);
          }),
        ),
      );
      const stats = await sim.receiverStats(phone);
      expect(stats.attempts).toBe(60);
      const log = await sim.log(phone);
      const arrivals = [...log.accepted, ...log.rejected].map((m) => m.at);
      return {
        stats,
        spanMs: Math.max(...arrivals) - Math.min(...arrivals),
        lateDepartures: pacers.reduce((n, p) => n + p.lateDepartures, 0),
        lateClaims: pacers.reduce((n, p) => n + p.lateClaims, 0),
        lagMs: lag.max / 1e6,
        stalledMs: stalls.stop(),
      };
    } finally {
      lag.disable();
      stalls.stop();
      for (const p of pacers) p.close();
    }
  }

  it('two workers sending one number at once hold the cap at the receiver and use their slots', async () => {
    const { stats, spanMs, lateDepartures, lateClaims, lagMs, stalledMs } = await twoWorkersAtTheCap(
      [realClock, realClock],
      10,
    );
    console.log(
      `pacing, two pacers at 10 msg/s: ${stats.throttled} × 130429, at most ${stats.maxAttemptsPerWindow} sends in any 1,000 ms at the receiver; ` +
        `span ${spanMs.toFixed(0)} ms; ${lateDepartures} late departures, ${lateClaims} new slots; ` +
        `this process stalled ${stalledMs.toFixed(0)} ms in all, event-loop lag ≤ ${lagMs.toFixed(0)} ms`,
    );
    // The cap where Meta judges it: no refusal, and no second with more than 10 sends arriving.
    expect(stats.throttled).toBe(0);
    expect(stats.maxAttemptsPerWindow).toBeLessThanOrEqual(10);
    // 60 sends in slots of 113.8 ms (87.9% of 10 msg/s): 6.7 s, so under 8 s (the bound before
    // 42f1ee0) plus the time this process was stalled: a send that misses its slot takes the next
    // one its process holds (the send behind it the one after, and only the last claims a new one),
    // so what a stall costs is the slots that passed during it. Before, the two pacers' 60
    // concurrent claims were answered out of order, a send waited behind one with a later slot,
    // missed its own and claimed a new one after every slot already held, and every send behind it
    // did the same: up to 15 s (42f1ee0 allowed that; 11.9 s measured, 49 new slots for 60 sends).
    expect(spanMs).toBeGreaterThan(5_500);
    expect(spanMs).toBeLessThan(8_000 + stalledMs);
  });

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
    const { stats, lateClaims, lagMs } = await twoWorkersAtTheCap([clocks[0]!, clocks[1]!], 20);
    console.log(
      `pacing, two workers 800 ms apart on the database clock: ${stats.throttled} × 130429, at most ${stats.maxAttemptsPerWindow} sends in any 1,000 ms at the receiver; ` +
        `${lateClaims} new slots; event-loop lag ≤ ${lagMs.toFixed(0)} ms`,
    );
    expect(stats.throttled).toBe(0);
    expect(stats.maxAttemptsPerWindow).toBeLessThanOrEqual(20);
  });

  it('numbered on each worker own clock instead (the design before), the same two workers put more than the cap into some second', async () => {
    const phone = 'p' + randomBytes(4).toString('hex');
    await sim.setNumber(phone, { throughputPerSec: 20 });
    const pacers = [skewed(-400), skewed(400)].map(
      (clock, w) => new SharedPacer(conns[w]!.c, { burst: 45, intervalMs: 0 }, clock),
    );
    // Each worker reserves its 30 starts one after the other, from 3 s on (a pause: none is past
    // when its turn comes, however slow the claims). The second one's clock, 800 ms ahead, numbers
    // the same slots: it finds the first one's 30 taken and holds the next 30, whose starts on its
    // clock fall 800 ms earlier in true time, among the first one's last 14.
    await pacers[0]!.pause(phone, 3_000);
    const held: { w: number; i: number; reservation: Reservation }[] = [];
    for (const [w, pacer] of pacers.entries())
      for (let i = 0; i < 30; i++) {
        const got = await pacer.reserve({
          phoneNumberId: phone,
          mps: 20,
          to: `1555${w}00${String(i).padStart(4, '0')}`,
        });
        if (got.kind !== 'reserved') throw new Error('no wait limit: always reserved');
        held.push({ w, i, reservation: got.reservation });
      }
    await Promise.all(
      held.map(async ({ w, i, reservation }) => {
        expect(await pacers[w]!.depart(reservation)).toBe(true);
        await post(sim.url, phone, reservation.to!, `${w}-${i}`);
      }),
    );
    for (const p of pacers) p.close();
    const stats = await sim.receiverStats(phone);
    console.log(
      `pacing, two workers 800 ms apart on their own clocks: ${stats.throttled} × 130429, at most ${stats.maxAttemptsPerWindow} sends in any 1,000 ms at the receiver`,
    );
    // Over the cap where Meta judges it, both ways of reading it: the sends that arrived in some
    // second (the refused ones too: counted over the accepted ones only, the simulator's own
    // refusals kept that at 20) and the 130429 answers. The control case of the two above: the
    // receiver's measures do fail when the workers do not share their slots' clock.
    expect(stats.attempts).toBe(60);
    expect(stats.maxAttemptsPerWindow).toBeGreaterThan(20);
    expect(stats.throttled).toBeGreaterThan(0);
  });

  it('a late send costs its process one slot: it takes the slot of the next send the process holds, not a new one after them all', async () => {
    const phone = 'p' + randomBytes(4).toString('hex');
    const pacer = new SharedPacer(conns[0]!.c, { burst: 45, intervalMs: 0 });
    const width = capSlotMs(20);
    // Ten sends of one number reserved ahead, in sequence (as the drain reserves them), from a
    // second on (a pause: the claims' own time, on a loaded database, does not eat into the slots).
    await pacer.pause(phone, 1_000);
    const held = [];
    for (let i = 0; i < 10; i++) {
      const got = await pacer.reserve({ phoneNumberId: phone, mps: 20, to: `r${i}` });
      if (got.kind !== 'reserved') throw new Error('no wait limit: always reserved');
      held.push(got.reservation);
    }
    const first = held[0]!.at;
    // The first one's process is busy past its slot: 60 ms, over the tolerance (50 ms).
    const order: number[] = [];
    const departures = held.map(async (r, i) => {
      if (i === 0) await new Promise((res) => setTimeout(res, Math.max(0, r.at - realClock.now()) + 60));
      expect(await pacer.depart(r)).toBe(true);
      order.push(i);
      return realClock.now();
    });
    const times = await Promise.all(departures);
    pacer.close();
    const lastSlot = (Math.max(...times) - first) / width;
    console.log(
      `pacing, one late send of ten held: ${pacer.lateDepartures} late departures, ${pacer.lateClaims} new slots, the last left ${lastSlot.toFixed(1)} slots after the first slot`,
    );
    expect(order).toEqual([...Array(10).keys()]); // the late one held back those behind it
    // Ten sends in 11 or 12 slots. Before: the late one claimed a slot after the ten held and every
    // send behind it missed its own and claimed another after that: 19 slots measured.
    expect(lastSlot).toBeLessThan(13);
    // Each send took the next one's slot and the last one claimed a new slot: one (two when this
    // process's timer woke more than 25 ms late too and the next slot had also begun too long ago).
    expect(pacer.lateClaims).toBeLessThanOrEqual(2);
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
      sendSlots: withMethod(base.sendSlots, 'insertOne', async (insertOne, ...a) => {
        await new Promise((r) => setTimeout(r, 120));
        return insertOne(...a);
      }),
    };
    const pacer = new SharedPacer(slow, { burst: 45, intervalMs: 0 }, lateClock);
    const started = Date.now();
    const late: Record<number, number> = {};
    for (const mps of [80, 20]) {
      const before = pacer.lateDepartures;
      for (let i = 0; i < 5; i++) {
        const got = await pacer.take({ phoneNumberId: `${phone}-${mps}`, mps, to: `r${i}` });
        expect(got.kind).toBe('reserved');
      }
      late[mps] = pacer.lateDepartures - before;
    }
    pacer.close();
    // Before: each late wake claimed the next slot and slept to it, late again, without end: the
    // first send never left (the time bound).
    expect(Date.now() - started).toBeLessThan(20_000);
    console.log(
      `pacing, late timers and slow claims: new slots for 5 sends: ${late[80]} at 80 msg/s, ${late[20]} at 20 msg/s`,
    );
    // Each send misses the slot its first claim aimed at (the claim is answered 120 ms later) and
    // then claims the slot that will be under way at the answer, left in without a timer when at
    // most half the tolerance of it will have passed, else the next one (slept to: missed again).
    // At 80 msg/s (14.2 ms slots) one is always under way: one new slot a send, measured 5 of 5 in
    // three runs. 61940d3 allowed 6 a send after 42 for 10 sends under the full suite: the claim
    // time's moving average started at 0 and took a dozen claims to reach 120 ms, so each re-claim
    // meanwhile aimed at a slot already past when answered (12-13 for the 5 sends at 80 msg/s,
    // measured). At 20 msg/s (56.9 ms slots) about half the re-claims wait for the next slot and
    // miss it: 8-10 measured for 5 sends.
    expect(late[80]).toBeLessThanOrEqual(10);
    expect(late[20]).toBeLessThanOrEqual(25);
  });

  it('a database whose pause reads take longer than the tolerance does not make every departure late: the pause is read before the slot', async () => {
    const phone = 'p' + randomBytes(4).toString('hex');
    // Every read of send_pauses takes 120 ms: longer than LATE_TOLERANCE_MS (50 ms) and than a
    // read's trust (PAUSE_READ_TTL_MS, 100 ms).
    const base = conns[0]!.c;
    let pauseReads = 0;
    const slow = {
      ...base,
      sendPauses: withMethod(base.sendPauses, 'find', (find, ...a) => {
        pauseReads++;
        const cursor = find(...a) as ReturnType<typeof base.sendPauses.find>;
        const toArray = cursor.toArray.bind(cursor);
        return Object.assign(cursor, {
          toArray: async () => {
            await new Promise((r) => setTimeout(r, 120));
            return toArray();
          },
        });
      }),
    };
    const pacer = new SharedPacer(slow, { burst: 45, intervalMs: 0 });
    // A worker that has run a while knows how long its reads take: one send of another number first.
    expect((await pacer.take({ phoneNumberId: `${phone}-warm`, mps: 20, to: 'w' })).kind).toBe('reserved');
    const started = Date.now();
    // Ten sends reserved ahead, as a drain reserves them (from 3 s on: the claims' own time, a
    // read and an insert each, does not eat into the slots), then sent.
    const pausedAt = Date.now();
    await pacer.pause(phone, 3_000);
    const held: Reservation[] = [];
    for (let i = 0; i < 10; i++) {
      const got = await pacer.reserve({ phoneNumberId: phone, mps: 20, to: `r${i}` });
      if (got.kind !== 'reserved') throw new Error('no wait limit: always reserved');
      held.push(got.reservation);
    }
    // The pause this process recorded holds here before any read sees it.
    expect(held[0]!.at).toBeGreaterThanOrEqual(pausedAt + 3_000);
    const ahead = { claims: pacer.lateClaims, reads: pauseReads };
    expect(await Promise.all(held.map((r) => pacer.depart(r)))).toEqual(held.map(() => true));
    const reserved = { claims: pacer.lateClaims - ahead.claims, reads: pauseReads - ahead.reads };
    // Five sent as a direct send is, each reserved and then sent at once: the claim aims past the
    // read `depart` makes ahead of the slot (the lead counts the reads' time). Without the lead
    // (c2d8a54) each left late once (the read it was claimed after was too old when the slot came),
    // then took the slot under way when a claim and a read made together were answered: 2–3.
    const before = pacer.lateClaims;
    for (let i = 0; i < 5; i++) {
      const got = await pacer.take({ phoneNumberId: phone, mps: 20, to: `d${i}` });
      expect(got.kind).toBe('reserved');
    }
    const direct = pacer.lateClaims - before;
    pacer.close();
    console.log(
      `pacing, pause reads of 120 ms: 10 reserved ahead: ${reserved.claims} new slots, ${reserved.reads} pause reads; 5 direct: ${direct} new slots`,
    );
    // Before (the pause read after the wake, then judged): every try came out 120 ms late, claimed
    // again, read again, late again: no send left (the time bound). Now the read is made ahead of
    // the slot, by the time reads take here. A timer waking late on a busy test machine may still
    // cost a new slot or two (a late send takes the next held one's slot, no write; the last one
    // claims). Without the warm-up, the first four reads started with no time known, each
    // answered 75 ms after its slot: 3 new slots measured.
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(reserved.claims).toBeLessThanOrEqual(2);
    expect(reserved.reads).toBeLessThanOrEqual(14);
    expect(direct).toBeLessThanOrEqual(10);
  });

  it('a sender whose preparation takes longer than the tolerance gets slots past it: its sends leave on their first slot', async () => {
    const phone = 'p' + randomBytes(4).toString('hex');
    const pacer = new SharedPacer(conns[0]!.c, { burst: 45, intervalMs: 0 });
    // Each send, one after the other as a direct send makes them: reserve, wake to prepare, then
    // 120 ms of preparation (the ledger's record on a loaded database) before departing.
    const late: number[] = [];
    for (let i = 0; i < 10; i++) {
      const before = pacer.lateDepartures;
      const got = await pacer.reserve({ phoneNumberId: phone, mps: 80, to: `r${i}` });
      if (got.kind !== 'reserved') throw new Error('no wait limit: always reserved');
      await pacer.prepare(got.reservation);
      await new Promise((r) => setTimeout(r, 120));
      expect(await pacer.depart(got.reservation)).toBe(true);
      late.push(pacer.lateDepartures - before);
    }
    pacer.close();
    console.log(
      `pacing, 120 ms of preparation per send: late departures per send ${late.join(' ')}, lead now ${Math.round(pacer.leadMs())} ms`,
    );
    // The first send has no preparation time measured yet: its slot is the next one, passed when
    // it departs. From then on the claims aim past the preparation (the measured time's moving
    // average reaches 120 ms in a few sends). Without the lead every send claimed a new slot:
    // 10 of 10 late, measured.
    expect(late.slice(5).reduce((a, b) => a + b, 0)).toBe(0);
    expect(late.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(5);
    expect(pacer.leadMs()).toBeGreaterThan(100);
  });

  it("reads a number's pause and all its recipients' pauses in one read, and honours a recipient's pause another worker recorded", async () => {
    const phone = 'p' + randomBytes(4).toString('hex');
    let reads = 0;
    const base = conns[0]!.c;
    const counting = {
      ...base,
      sendPauses: withMethod(base.sendPauses, 'find', (find, ...a) => {
        reads++;
        return find(...a);
      }),
    };
    const pair = { burst: 45, intervalMs: 6_000 };
    // Another worker paused recipient r3 for 5 s (131056), and another number's recipient.
    const other = new SharedPacer(conns[1]!.c, pair);
    await other.penalize(phone, 'r3', 5_000);
    await other.penalize(`${phone}9`, 'r4', 5_000);
    const pacer = new SharedPacer(counting, pair);
    const started = Date.now();
    const at: Record<string, number> = {};
    await Promise.all(
      Array.from({ length: 10 }, async (_, i) => {
        const got = await pacer.reserve({ phoneNumberId: phone, mps: 80, to: `r${i}` });
        if (got.kind !== 'reserved') throw new Error('no wait limit: always reserved');
        at[`r${i}`] = got.reservation.at - started;
        got.reservation.done();
      }),
    );
    pacer.close();
    other.close();
    console.log(`pacing, 10 recipients reserved at once: ${reads} pause reads; r3 at +${Math.round(at.r3!)} ms`);
    // One read for the number and its ten recipients (was 11: the number's, then one per recipient).
    expect(reads).toBe(1);
    expect(at.r3).toBeGreaterThanOrEqual(4_900);
    // The other recipients are not held back by r3's pause: neither by the other number's
    // recipient r4's pause, nor behind r3's slot (its claim, deferred by its recipient, leaves the
    // number's next-slot hint where it was; before, every claim after it went past 5 s: r4 at
    // +5,017 ms measured).
    expect(
      Math.max(
        ...Object.entries(at)
          .filter(([to]) => to !== 'r3')
          .map(([, ms]) => ms),
      ),
    ).toBeLessThan(1_000);
  });

  it("a late send never swaps its passed slot to a send its recipient holds back: that one still leaves after its recipient's pause", async () => {
    const phone = 'p' + randomBytes(4).toString('hex');
    const pacer = new SharedPacer(conns[0]!.c, { burst: 45, intervalMs: 6_000 });
    // r1 is paused for 2 s (131056). Its send is reserved first (deferred to the pause's end), then
    // one to r0, at once; r0's process is busy past its slot.
    const pauseEnds = Date.now() + 2_000;
    await pacer.penalize(phone, 'r1', 2_000);
    const deferred = await pacer.reserve({ phoneNumberId: phone, mps: 80, to: 'r1' });
    const soon = await pacer.reserve({ phoneNumberId: phone, mps: 80, to: 'r0' });
    if (deferred.kind !== 'reserved' || soon.kind !== 'reserved') throw new Error('no wait limit: always reserved');
    const left: Record<string, number> = {};
    await Promise.all([
      (async () => {
        expect(await pacer.depart(deferred.reservation)).toBe(true);
        left.r1 = Date.now();
      })(),
      (async () => {
        await new Promise((r) => setTimeout(r, Math.max(0, soon.reservation.at - Date.now()) + 80));
        expect(await pacer.depart(soon.reservation)).toBe(true);
        left.r0 = Date.now();
      })(),
    ]);
    pacer.close();
    console.log(
      `pacing, a late send beside a recipient held back: r0 left ${left.r0! - soon.reservation.at} ms after its slot, r1 ${left.r1! - pauseEnds} ms after its pause`,
    );
    // Before: the late r0 send took r1's slot, 2 s away, and left then (1,979 ms after its own
    // slot, measured); r1, handed r0's passed slot, claimed again when it woke and still left at
    // its pause's end. It must (20 ms: the pacer's clock against Date.now).
    expect(left.r1!).toBeGreaterThanOrEqual(pauseEnds - 20);
    expect(left.r0! - soon.reservation.at).toBeLessThan(1_000);
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

  it("claims a send's cap slot and pair slot in one document; a claim refused for one of them moves on from that one only", async () => {
    const phone = 'p' + randomBytes(4).toString('hex');
    // A stopped clock: every claim aims at the same slots, so the second worker meets the first's.
    const t = realClock.now() + 60_000;
    const stopped: Clock = { now: () => t, sleep: () => Promise.resolve() };
    const pair = { burst: 45, intervalMs: 6_000 };
    const [a, b] = conns.map((conn) => new SharedPacer(conn.c, pair, stopped));
    const at = async (pacer: SharedPacer, to?: string) => {
      const got = await pacer.reserve({ phoneNumberId: phone, mps: 20, ...(to ? { to } : {}) });
      if (got.kind !== 'reserved') throw new Error('not reserved');
      got.reservation.done();
      return Math.round(got.reservation.at / capSlotMs(20));
    };
    const k = await at(a!, 'r1');
    // b's first try is a's cap slot and a's pair slot of r1: both taken; it moves on cap slot first,
    // then finds that pair slot taken and takes the next one, on the cap slot it had found free.
    expect(await at(b!, 'r1')).toBe(k + 1);
    expect(await at(b!, 'r2')).toBe(k + 2);
    // Sends without a recipient (and late sends' new slots) hold a cap slot alone: no pair, no clash.
    expect(await at(a!)).toBe(k + 3);
    expect(await at(b!)).toBe(k + 4);
    const docs = await conns[0]!.c.sendSlots.find({ _id: { $regex: `^${phone}` } }).toArray();
    const j = Math.floor(t / pair.intervalMs);
    // One document a send (before: a cap slot and a pair slot, two).
    const byId = Object.fromEntries(docs.map((d) => [d._id, d.pair ?? null]));
    expect(byId).toEqual({
      [`${phone}:${k}`]: `${phone}>r1:${j}`,
      [`${phone}:${k + 1}`]: `${phone}>r1:${j + 1}`,
      [`${phone}:${k + 2}`]: `${phone}>r2:${j}`,
      [`${phone}:${k + 3}`]: null,
      [`${phone}:${k + 4}`]: null,
    });
    a!.close();
    b!.close();
  });

  it('holds the pair limit across workers and a pause seen by one worker stops the other', async () => {
    const phone = 'p' + randomBytes(4).toString('hex');
    const pair = { burst: 5, intervalMs: 1_000 };
    await sim.setNumber(phone, { pairBurst: pair.burst, pairRefillMs: pair.intervalMs });
    const [a, b] = conns.map((conn) => new SharedPacer(conn.c, pair));
    const starts: number[] = [];
    const t0 = Date.now();
    await Promise.all(
      [a!, b!].flatMap((pacer, w) =>
        Array.from({ length: 4 }, async (_, i) => {
          await pacer.take({ phoneNumberId: phone, mps: 100, to: '15550001111' });
          starts.push(Date.now() - t0);
          await post(sim.url, phone, '15550001111', `${w}-${i}`);
        }),
      ),
    );
    // burst 5 (kept 3 back: 2 at once), then one per second: 8 sends take at least 5 s.
    starts.sort((x, y) => x - y);
    expect(starts[starts.length - 1]!).toBeGreaterThanOrEqual(4_900);
    // Judged at the receiver: every send that arrived held against Meta's token bucket (burst 5,
    // one more a second) never overdraws it, and no 131056. (The pacer keeps 3 of the burst back;
    // 2.3-4.0 measured: claims answered across interval boundaries on a loaded database let the
    // sends of two intervals' slots leave together.)
    const stats = await sim.receiverStats(phone);
    console.log(
      `pacing, pair limit across two pacers: 131056 × ${stats.pairLimited}, burst needed ${stats.maxPairBurst} of ${pair.burst}`,
    );
    expect(stats.attempts).toBe(8);
    expect(stats.pairLimited).toBe(0);
    expect(stats.maxPairBurst).toBeLessThanOrEqual(pair.burst);

    await a!.pause(phone, 1_500);
    await new Promise((r) => setTimeout(r, 150)); // b trusts its last read of the pauses for 100 ms
    const before = Date.now();
    await b!.take({ phoneNumberId: phone, mps: 100 });
    expect(Date.now() - before).toBeGreaterThanOrEqual(1_200);
    a!.close();
    b!.close();
  }, 30_000);
});
