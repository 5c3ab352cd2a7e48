import { statusFor, statusPayload } from '../../tools/meta-sim/payloads';
import { spawnMetaSimulator } from '../../tools/meta-sim/process';
import { startMetaSimulator, type MetaSimulator, type ReceiverStats } from '../../tools/meta-sim/server';

const TOKEN = 'sim-token';
const PHONE = '106540352242922';
const WABA = '102290129340398';

let sim: MetaSimulator;

beforeAll(async () => {
  sim = await startMetaSimulator({ token: TOKEN });
});
afterAll(async () => {
  await sim.stop();
});
beforeEach(() => {
  sim.clearLog();
  sim.resetNumber(PHONE);
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** One Cloud API text send; `clientId` goes into `biz_opaque_callback_data`. Resolves to the HTTP status and Meta's code. */
async function send(to: string, clientId?: unknown): Promise<{ status: number; code?: number }> {
  const body: Record<string, unknown> = { messaging_product: 'whatsapp', to, type: 'text', text: { body: 'hi' } };
  if (clientId !== undefined) body.biz_opaque_callback_data = clientId;
  const res = await fetch(`${sim.url}/v25.0/${PHONE}/messages`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const json = (await res.json()) as { error?: { code: number } };
  return { status: res.status, code: json.error?.code };
}

/** Sends one after the other (so arrival order is the call order); returns the HTTP statuses. */
async function sendAll(tos: string[]): Promise<number[]> {
  const statuses: number[] = [];
  for (const to of tos) statuses.push((await send(to)).status);
  return statuses;
}

describe('Meta simulator: strict one-second sliding window', () => {
  it('refuses the (cap+1)-th send within 1,000 ms with 130429 in Meta error shape, and accepts it once the window has passed', async () => {
    sim.setNumber(PHONE, { throughputPerSec: 3, pairBurst: 0 });
    expect(sim.numberConfig(PHONE).window).toBe('sliding');
    expect(await sendAll(['+1', '+2', '+3'])).toEqual([200, 200, 200]);
    const res = await fetch(`${sim.url}/v25.0/${PHONE}/messages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ messaging_product: 'whatsapp', to: '+4', type: 'text', text: { body: 'hi' } }),
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({
      error: {
        message: '(#130429) Rate limit hit',
        type: 'OAuthException',
        code: 130429,
        error_data: { messaging_product: 'whatsapp', details: 'Rate limit hit' },
        fbtrace_id: expect.any(String),
      },
    });
    const firstAcceptedAt = sim.log.accepted[0]!.at;
    await sleep(Math.max(0, firstAcceptedAt + 1_000 - (performance.timeOrigin + performance.now())) + 20);
    expect((await send('+4')).status).toBe(200);
  });

  it('is stricter than the token bucket: after a full burst, nothing more passes until 1,000 ms after its first send', async () => {
    // Cap 2: two sends, then a third 600 ms later. The bucket has refilled 1.2 tokens by then; the window has not moved.
    sim.setNumber(PHONE, { throughputPerSec: 2, pairBurst: 0 });
    expect(await sendAll(['+1', '+2'])).toEqual([200, 200]);
    await sleep(600);
    expect(await send('+3')).toEqual({ status: 400, code: 130429 });

    sim.setNumber(PHONE, { throughputPerSec: 2, pairBurst: 0, window: 'bucket' });
    expect(await sendAll(['+1', '+2'])).toEqual([200, 200]);
    await sleep(600);
    expect((await send('+3')).status).toBe(200);
  });

  it('a send refused for its pair limit does not take a place in the window', async () => {
    sim.setNumber(PHONE, { throughputPerSec: 2, pairBurst: 1, pairRefillMs: 60_000 });
    expect(await sendAll(['+1', '+1', '+2'])).toEqual([200, 400, 200]);
    expect(sim.log.rejected.map((r) => r.code)).toEqual([131056]);
  });
});

describe('Meta simulator: receiver statistics', () => {
  it('counts duplicates by client id and keeps each recipient’s client ids in arrival order', async () => {
    sim.setNumber(PHONE, { pairBurst: 0 });
    for (const [to, id] of [
      ['+1', 'm-1#1'],
      ['+1', 'm-2#2'],
      ['+2', 'm-3#1'],
      ['+1', 'm-1#1'],
      ['+1', 'm-1#1'],
      ['+2', 'm-3#1'],
    ] as const) {
      expect((await send(to, id)).status).toBe(200);
    }
    expect((await send('+3')).status).toBe(200); // no client id: counted, not listed
    expect(sim.receiverStats(PHONE)).toMatchObject<Partial<ReceiverStats>>({
      phoneNumberId: PHONE,
      accepted: 7,
      duplicates: 3,
      duplicateIds: ['m-1#1', 'm-3#1'],
      byRecipient: { '+1': ['m-1#1', 'm-2#2', 'm-1#1', 'm-1#1'], '+2': ['m-3#1', 'm-3#1'] },
    });
    expect(sim.log.accepted.map((m) => m.clientId)).toEqual([
      'm-1#1',
      'm-2#2',
      'm-3#1',
      'm-1#1',
      'm-1#1',
      'm-3#1',
      undefined,
    ]);
  });

  it('maxPerWindow is the most accepted sends in any 1,000 ms, and 130429 / 131056 answers are counted', async () => {
    sim.setNumber(PHONE, { throughputPerSec: 3, pairBurst: 2, pairRefillMs: 60_000 });
    // 3 accepted, 1 refused (130429) within the first window.
    expect(await sendAll(['+1', '+2', '+3', '+4'])).toEqual([200, 200, 200, 400]);
    await sleep(1_100);
    // A new window: 2 accepted (+5 twice), then the third to +5 is over its pair limit (131056).
    expect(await sendAll(['+5', '+5', '+5'])).toEqual([200, 200, 400]);
    expect(sim.receiverStats(PHONE)).toMatchObject({
      accepted: 5,
      attempts: 7,
      maxPerWindow: 3,
      maxAttemptsPerWindow: 4,
      throttled: 1,
      pairLimited: 1,
    });
  });

  it('measures the cap where Meta judges it: every send that arrived counts in its window, the refused ones too', async () => {
    // A sender 4 over a cap of 3 within one second: the simulator accepts 3, so the accepted sends
    // alone (maxPerWindow) say the cap held; the arrivals say 7, and four 130429 answers went back.
    sim.setNumber(PHONE, { throughputPerSec: 3, pairBurst: 0 });
    expect(await sendAll(['+1', '+2', '+3', '+4', '+5', '+6', '+7'])).toEqual([200, 200, 200, 400, 400, 400, 400]);
    expect(sim.receiverStats(PHONE)).toMatchObject({
      accepted: 3,
      attempts: 7,
      maxPerWindow: 3,
      maxAttemptsPerWindow: 7,
      throttled: 4,
    });
  });

  it('counts a send refused for any reason (a server error, an offboarded number) in its window', async () => {
    sim.setNumber(PHONE, { throughputPerSec: 10, pairBurst: 0 });
    sim.failNext(PHONE, 2, 503);
    expect(await sendAll(['+1', '+2', '+3'])).toEqual([503, 503, 200]);
    sim.setMode(PHONE, 'offboarded');
    expect(await sendAll(['+4'])).toEqual([400]);
    expect(sim.receiverStats(PHONE)).toMatchObject({ accepted: 1, attempts: 4, maxAttemptsPerWindow: 4, throttled: 0 });
  });

  it('the window is strict and slides: sends 1,000 ms apart or more are in no window together', async () => {
    sim.setNumber(PHONE, { pairBurst: 0 });
    expect(await sendAll(['+1', '+2', '+3'])).toEqual([200, 200, 200]);
    await sleep(1_050);
    expect(await sendAll(['+4', '+5'])).toEqual([200, 200]);
    const stats = sim.receiverStats(PHONE);
    expect(stats).toMatchObject({ attempts: 5, maxAttemptsPerWindow: 3 });
    // The busiest window's arrivals are the first three sends' (the later two are a window of 2),
    // each stamped as it arrived, before its answer was logged.
    const logged = sim.log.accepted.filter((m) => m.phoneNumberId === PHONE).map((m) => m.at);
    expect(stats.busiestWindow).toHaveLength(3);
    stats.busiestWindow.forEach((t, i) => {
      expect(t).toBeLessThanOrEqual(logged[i]!);
      expect(logged[i]! - t).toBeLessThan(100);
    });
  });

  it('holds every arrival to a recipient against the pair bucket (maxPairBurst), the refused ones too', async () => {
    // Pair burst 2, one more a minute: three sends to +5 need a burst of 3, whatever was answered
    // (the third is refused 131056); one to +6 needs 1.
    sim.setNumber(PHONE, { pairBurst: 2, pairRefillMs: 60_000 });
    expect(await sendAll(['+5', '+5', '+6', '+5'])).toEqual([200, 200, 200, 400]);
    expect(sim.receiverStats(PHONE).maxPairBurst).toBeCloseTo(3, 2);
    // A refill of 100 ms: sends 300 ms apart each find the bucket drained: a burst of 1.
    sim.clearLog();
    sim.setNumber(PHONE, { pairBurst: 2, pairRefillMs: 100 });
    for (let i = 0; i < 3; i++) {
      expect((await send('+7')).status).toBe(200);
      await sleep(300);
    }
    expect(sim.receiverStats(PHONE).maxPairBurst).toBe(1);
    // No pair limit: not measured.
    sim.clearLog();
    sim.setNumber(PHONE, { pairBurst: 0 });
    expect(await sendAll(['+8', '+8', '+8'])).toEqual([200, 200, 200]);
    expect(sim.receiverStats(PHONE).maxPairBurst).toBe(0);
  });

  it('without a cap, a burst shows its true size in maxPerWindow and maxAttemptsPerWindow', async () => {
    sim.setNumber(PHONE, { pairBurst: 0 });
    await Promise.all(Array.from({ length: 12 }, (_, i) => send(`+${i}`)));
    expect(sim.receiverStats(PHONE)).toMatchObject({
      accepted: 12,
      attempts: 12,
      maxPerWindow: 12,
      maxAttemptsPerWindow: 12,
      throttled: 0,
    });
  });

  it('serves the stats over HTTP, per number and for all numbers, and clears them with the log', async () => {
    await send('+1', 'x');
    const one = (await (await fetch(`${sim.url}/_sim/receiver-stats?phoneNumberId=${PHONE}`)).json()) as ReceiverStats;
    expect(one).toMatchObject({ phoneNumberId: PHONE, accepted: 1, byRecipient: { '+1': ['x'] } });
    const all = (await (await fetch(`${sim.url}/_sim/receiver-stats`)).json()) as Record<string, ReceiverStats>;
    expect(Object.keys(all)).toEqual([PHONE]);
    sim.resetNumber(PHONE); // a config reset keeps what was received
    expect(sim.receiverStats(PHONE).accepted).toBe(1);
    expect((await fetch(`${sim.url}/_sim/log`, { method: 'DELETE' })).status).toBe(204);
    expect(sim.receiverStats(PHONE)).toMatchObject({
      accepted: 0,
      attempts: 0,
      maxAttemptsPerWindow: 0,
      maxPerWindow: 0,
      duplicates: 0,
      byRecipient: {},
    });
    expect(sim.receiverStats()).toEqual({});
  });
});

describe('Meta simulator: biz_opaque_callback_data', () => {
  it('records it as the message’s client id and round-trips it into the status webhook payload', async () => {
    const clientId = 'relay:msg-42#7';
    expect((await send('+16505551234', clientId)).status).toBe(200);
    const [accepted] = sim.log.accepted;
    expect(accepted).toMatchObject({ clientId, body: expect.objectContaining({ biz_opaque_callback_data: clientId }) });
    const payload = statusPayload(WABA, PHONE, [statusFor(accepted!, 'delivered', { timestamp: 1751142888 })]);
    expect(payload.entry[0]?.changes[0]?.value.statuses).toEqual([
      {
        id: accepted!.wamid,
        status: 'delivered',
        timestamp: '1751142888',
        recipient_id: '16505551234',
        biz_opaque_callback_data: clientId,
      },
    ]);
  });

  it('a status for a send without it carries no biz_opaque_callback_data', async () => {
    await send('+16505551234');
    const status = statusPayload(WABA, PHONE, [statusFor(sim.log.accepted[0]!, 'sent')]).entry[0]?.changes[0]?.value
      .statuses as Array<Record<string, unknown>>;
    expect(status[0]).not.toHaveProperty('biz_opaque_callback_data');
  });

  it('refuses a non-string or one longer than 512 characters with code 100', async () => {
    expect(await send('+1', 'x'.repeat(512))).toEqual({ status: 200, code: undefined });
    expect(await send('+1', 'x'.repeat(513))).toEqual({ status: 400, code: 100 });
    expect(await send('+1', { order: 1 })).toEqual({ status: 400, code: 100 });
    expect(sim.log.rejected).toHaveLength(2);
  });
});

describe('Meta simulator in a process of its own (spawnMetaSimulator)', () => {
  it('serves sends and is steered and read over its control routes', async () => {
    const remote = await spawnMetaSimulator();
    try {
      await remote.setNumber(PHONE, { throughputPerSec: 2, pairBurst: 0 });
      const statuses: number[] = [];
      for (const to of ['+1', '+2', '+3']) {
        const res = await fetch(`${remote.url}/v25.0/${PHONE}/messages`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ messaging_product: 'whatsapp', to, type: 'text', text: { body: 'hi' } }),
        });
        statuses.push(res.status);
      }
      expect(statuses).toEqual([200, 200, 400]);
      expect(await remote.receiverStats(PHONE)).toMatchObject({
        accepted: 2,
        attempts: 3,
        maxAttemptsPerWindow: 3,
        throttled: 1,
      });
      const log = await remote.log(PHONE);
      expect(log.accepted.map((m) => m.to)).toEqual(['+1', '+2']);
      expect(log.rejected.map((r) => r.code)).toEqual([130429]);
    } finally {
      await remote.stop();
    }
    expect(() => process.kill(remote.pid, 0)).toThrow();
  }, 30_000);
});
