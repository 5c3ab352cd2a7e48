import { createLogger } from '../../src/logger';
import { startOutboxRelay, type OutboxRelay } from '../../src/lifecycle/outbox-relay';
import { holdCounts } from '../../src/lifecycle/gate-holds.store';
import { accountUpdatePayload } from '../../tools/meta-sim/payloads';
import { sendWebhook } from '../../tools/meta-sim/server';
import { eventually, startStack, uniqueDigits, type Stack } from '../support/stack';

/**
 * The webhook outbox on the real stack: a delivery is acknowledged once it is recorded, a relay
 * hands it to Temporal afterwards, and a crash between the two loses nothing.
 */
describe('the webhook outbox', () => {
  let stack: Stack;
  const relays: OutboxRelay[] = [];
  /** A relay as a fresh process would start one: nothing in memory, everything from the store. */
  const freshRelay = () => {
    const relay = startOutboxRelay(
      { c: stack.rt.c, launch: stack.rt.launch, logger: createLogger('silent') },
      { sweepAfterMs: 0, sweepIntervalMs: 200 },
    );
    relays.push(relay);
    return relay;
  };
  beforeAll(async () => {
    // No relay in the stack's process: as if it crashed right after acknowledging.
    stack = await startStack({ noRelay: true });
  });
  afterAll(async () => {
    await Promise.all(relays.map((r) => r.stop()));
    await stack?.stop();
  });
  afterEach(async () => {
    await Promise.all(relays.splice(0).map((r) => r.stop()));
  });

  const state = async (wabaId: string) => (await stack.rt.c.wabas.findOne({ _id: wabaId }))?.state;

  it('keeps an acknowledged delivery (raw bytes, signature, events) when no relay runs, and a fresh relay applies it; a redelivery is applied once', async () => {
    const wabaId = uniqueDigits();
    const time = Math.floor(Date.now() / 1000);
    const body = accountUpdatePayload(wabaId, 'ACCOUNT_OFFBOARDED', { time });
    const sent = await sendWebhook({ targetUrl: stack.webhookUrl, appSecret: stack.appSecret, body });
    expect(sent.status).toBe(200);
    const [recorded] = await stack.rt.c.outbox.find({ wabaIds: wabaId }).toArray();
    expect(recorded).toBeDefined();
    expect(Buffer.from(recorded!.raw, 'base64').toString('utf8')).toBe(sent.sentBody);
    expect(recorded!.signature).toBe(sent.signature);
    expect(recorded!.events).toMatchObject([{ type: 'ACCOUNT_OFFBOARDED', wabaId, metaTime: time }]);
    await new Promise((r) => setTimeout(r, 1_000));
    expect(await stack.rt.c.wabas.findOne({ _id: wabaId })).toBeNull();

    freshRelay();
    await eventually(async () => (await state(wabaId)) === 'offboarded', 30_000);
    await eventually(async () => (await stack.rt.c.outbox.countDocuments({ wabaIds: wabaId })) === 0);

    // Meta redelivers the same event: recorded again, handed over never again.
    expect(await stack.webhook(body)).toBe(200);
    await eventually(async () => (await stack.rt.c.outbox.countDocuments({ wabaIds: wabaId })) === 0);
    const audit = await stack.rt.c.accountEvents.find({ wabaId }).toArray();
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({ outcome: 'signalled', event: 'ACCOUNT_OFFBOARDED', deliveryId: recorded!._id });
    const doc = await stack.rt.c.wabas.findOne({ _id: wabaId });
    expect(doc?.events.filter((e) => e.type === 'ACCOUNT_OFFBOARDED')).toHaveLength(1);

    // A reconnection, then the old offboarding once more (its run has ended): still nothing.
    expect(await stack.accountUpdate(wabaId, 'ACCOUNT_RECONNECTED', { time: time + 5 })).toBe(200);
    await eventually(async () => (await state(wabaId)) === 'connected', 30_000);
    expect(await stack.webhook(body)).toBe(200);
    await eventually(async () => (await stack.rt.c.outbox.countDocuments({ wabaIds: wabaId })) === 0);
    await new Promise((r) => setTimeout(r, 1_000));
    expect(await state(wabaId)).toBe('connected');
  });

  it('with two relays over the same pending deliveries, applies each event once and in order per WABA', async () => {
    const wabas = Array.from({ length: 6 }, () => uniqueDigits());
    const time = Math.floor(Date.now() / 1000);
    for (const w of wabas) {
      expect(await stack.accountUpdate(w, 'ACCOUNT_OFFBOARDED', { time })).toBe(200);
      expect(await stack.accountUpdate(w, 'ACCOUNT_RECONNECTED', { time: time + 1 })).toBe(200);
    }
    freshRelay();
    freshRelay();
    for (const w of wabas) await eventually(async () => (await state(w)) === 'connected', 30_000);
    await eventually(async () => (await stack.rt.c.outbox.countDocuments({ wabaIds: { $in: wabas } })) === 0);
    for (const w of wabas) {
      expect(await stack.rt.c.accountEvents.countDocuments({ wabaId: w })).toBe(2);
      const doc = await stack.rt.c.wabas.findOne({ _id: w });
      expect(doc?.events.map((e) => e.type)).toEqual(['ACCOUNT_OFFBOARDED', 'ACCOUNT_RECONNECTED']);
    }
  });

  it('acknowledges a delivery of 60 offboardings at once (one outbox record) and applies every one', async () => {
    const wabas = Array.from({ length: 60 }, () => uniqueDigits());
    const time = Math.floor(Date.now() / 1000);
    const body = {
      object: 'whatsapp_business_account',
      entry: wabas.map((id) => ({
        id,
        time,
        changes: [{ field: 'account_update', value: { event: 'ACCOUNT_OFFBOARDED' } }],
      })),
    };
    const started = Date.now();
    expect(await stack.webhook(body)).toBe(200);
    const ackMs = Date.now() - started;
    expect(ackMs).toBeLessThan(2_000);
    expect(await stack.rt.c.outbox.countDocuments({ wabaIds: wabas[0] })).toBe(1);
    freshRelay();
    await eventually(
      async () => (await stack.rt.c.wabas.countDocuments({ _id: { $in: wabas }, state: 'offboarded' })) === 60,
      60_000,
      250,
    );
    for (const w of wabas) await stack.accountUpdate(w, 'ACCOUNT_RECONNECTED', { time: time + 1 });
    await eventually(
      async () => (await stack.rt.c.wabas.countDocuments({ _id: { $in: wabas }, state: 'connected' })) === 60,
      60_000,
      250,
    );
  });

  describe('the gate from the ack on (gate holds)', () => {
    const text = (phone: string, body: string) => ({
      phoneNumberId: phone,
      to: '15550009000',
      type: 'text',
      text: { body },
    });
    /** The WABA's gate hold is still stored, and its event is the one its workflow last handled. */
    const holdReleased = async (wabaId: string): Promise<boolean> => {
      const hold = await stack.rt.c.gateHolds.findOne({ _id: wabaId });
      const waba = await stack.rt.c.wabas.findOne({ _id: wabaId });
      return hold !== null && !holdCounts(hold, waba?.closingHandled, Date.now());
    };
    const sentBodies = (phone: string) =>
      stack.sim.log.accepted
        .filter((m) => m.phoneNumberId === phone)
        .map((m) => (m.body as { text: { body: string } }).text.body);

    it('queues sends once an offboarding is acknowledged, before any relay hands it over; the drain after reconnection sends them', async () => {
      const wabaId = uniqueDigits();
      const phone = uniqueDigits('3');
      await stack.register(phone, wabaId, { coexistence: true });
      const time = Math.floor(Date.now() / 1000);
      expect(await stack.accountUpdate(wabaId, 'ACCOUNT_OFFBOARDED', { time })).toBe(200);
      // No relay runs: the workflow knows nothing yet, the gate is closed all the same.
      expect(await stack.rt.c.wabas.findOne({ _id: wabaId })).toBeNull();
      const r = await stack.send(text(phone, 'held'));
      expect(r.status).toBe(202);
      expect((await stack.message(r.json.id as string))?.status).toBe('queued');
      expect(await stack.rt.c.gateHolds.countDocuments({ _id: wabaId })).toBe(1);

      freshRelay();
      await eventually(async () => (await state(wabaId)) === 'offboarded', 30_000);
      // Handled: the hold stays but no longer counts (the WABA document names its event); the
      // workflow's state closes the gate.
      expect(await holdReleased(wabaId)).toBe(true);
      expect(sentBodies(phone)).toEqual([]);
      expect(await stack.accountUpdate(wabaId, 'ACCOUNT_RECONNECTED', { time: time + 1 })).toBe(200);
      await eventually(async () => (await stack.message(r.json.id as string))?.status === 'sent', 30_000);
      expect(sentBodies(phone)).toEqual(['held']);
    });

    it('sends what a hold queued when the workflow ignores the offboarding as stale (no lasting closure)', async () => {
      const wabaId = uniqueDigits();
      const phone = uniqueDigits('3');
      await stack.register(phone, wabaId, { coexistence: true });
      const time = Math.floor(Date.now() / 1000);
      const relay = freshRelay();
      await stack.accountUpdate(wabaId, 'ACCOUNT_OFFBOARDED', { time });
      await eventually(async () => (await state(wabaId)) === 'offboarded', 30_000);
      await stack.accountUpdate(wabaId, 'ACCOUNT_RECONNECTED', { time: time + 10 });
      await eventually(async () => (await state(wabaId)) === 'connected', 30_000);
      await relay.idle();
      await relay.stop();

      // A late redelivery of an offboarding older than the reconnection: held at the ack, then
      // ignored by the workflow. The message the hold queued is still sent, once.
      expect(await stack.accountUpdate(wabaId, 'ACCOUNT_OFFBOARDED', { time: time + 5 })).toBe(200);
      const r = await stack.send(text(phone, 'stale-held'));
      expect((await stack.message(r.json.id as string))?.status).toBe('queued');
      freshRelay();
      await eventually(async () => (await stack.message(r.json.id as string))?.status === 'sent', 30_000);
      expect(await state(wabaId)).toBe('connected');
      expect(sentBodies(phone)).toEqual(['stale-held']);
      expect(await holdReleased(wabaId)).toBe(true);
    });
  });
});
