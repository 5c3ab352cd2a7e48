import { firstArrivals } from '../support/delivery';
import { eventually, startStack, uniqueDigits, type Stack } from '../support/stack';

/**
 * DRAIN_ORDER=waba: a drain keeps the WABA's whole queue in order at the receiver, whatever holds
 * a message back (the pair limit of a busy recipient, a retried server error). The default
 * (`recipient`) keeps only each recipient's order strictly (multi-worker.test.ts bounds the rest).
 */

const CAP = 20;
const PAIR = { burst: 3, intervalMs: 1_000 };

describe('DRAIN_ORDER=waba: the queue leaves in its order, one send at a time', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({
      env: {
        DRAIN_ORDER: 'waba',
        PAIR_LIMIT_BURST: String(PAIR.burst),
        PAIR_LIMIT_INTERVAL_MS: String(PAIR.intervalMs),
      },
    });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('a busy recipient over its pair burst and two retried server errors overtake nothing', async () => {
    const wabaId = uniqueDigits();
    const phone = uniqueDigits('4');
    await stack.register(phone, wabaId, { mps: CAP });
    stack.sim.setNumber(phone, { throughputPerSec: CAP, pairBurst: PAIR.burst, pairRefillMs: PAIR.intervalMs });
    await stack.accountUpdate(wabaId, 'ACCOUNT_OFFBOARDED');
    await eventually(async () => (await stack.rt.c.wabas.findOne({ _id: wabaId }))?.state === 'offboarded', 60_000);
    // 24 queued: every other one to the same customer (12, four times its pair burst), the rest to three others.
    const queued: string[] = [];
    for (let i = 0; i < 24; i++) {
      const to = i % 2 === 0 ? '15556000000' : `1555600000${(i % 3) + 1}`;
      const r = await stack.send({ phoneNumberId: phone, to, type: 'text', text: { body: `o${i}` } });
      expect(r.status).toBe(202);
      queued.push(r.json.id as string);
    }
    stack.sim.failNext(phone, 2, 503); // the first two POSTs of the drain fail and are retried
    await stack.accountUpdate(wabaId, 'ACCOUNT_RECONNECTED');
    await eventually(
      async () => (await Promise.all(queued.map((id) => stack.message(id)))).every((v) => v?.status === 'sent'),
      90_000,
      500,
    );

    const stats = stack.sim.receiverStats(phone);
    const arrivals = stack.sim.log.accepted.filter((m) => m.phoneNumberId === phone).map((m) => m.clientId);
    const rejected = stack.sim.log.rejected.filter((r) => r.phoneNumberId === phone).length;
    console.log(
      `DRAIN_ORDER=waba: ${stats.accepted} accepted, ${rejected} rejected first (retried), 130429 × ${stats.throttled}, ` +
        `131056 × ${stats.pairLimited}, at most ${stats.maxAttemptsPerWindow} sends arrived in any 1,000 ms (cap ${CAP}), ` +
        `pair burst needed ${stats.maxPairBurst} (Meta's ${PAIR.burst})`,
    );
    expect(rejected).toBeGreaterThanOrEqual(2); // the injected errors happened and were retried
    expect(firstArrivals(arrivals, queued)).toEqual(queued); // exactly the queue's order
    expect(stats.duplicates).toBe(0);
    // The caps where Meta judges them, over every send that arrived (the two refused with 503 too):
    // no second over the cap, no 130429; the busy recipient's sends within Meta's pair bucket
    // (burst 3, one more a second), no 131056.
    expect(stats.maxAttemptsPerWindow).toBeLessThanOrEqual(CAP);
    expect(stats.throttled).toBe(0);
    expect(stats.maxPairBurst).toBeLessThanOrEqual(PAIR.burst);
    expect(stats.pairLimited).toBe(0);
  }, 120_000);
});
