import { randomBytes } from 'node:crypto';
import { MongoClient } from 'mongodb';
import { collections, ensureIndexes } from '../../src/adapters/store/db';
import { customerWindowId } from '../../src/sending/windows.store';
import { recordInbound } from '../../src/sending/window';
import { eventually, uniqueDigits, type Stack } from '../support/stack';
import { finalOutcome as finalOutcomeOf, registerNumber, sendAccepted, startInboundStack } from '../support/customers';

/**
 * The customer service window on the real stack (Temporal, the store, the simulator): the
 * simulator sends customers' messages as `messages` webhooks to the service and, like Meta,
 * answers 131047 to a free-form send to a customer who last wrote more than 24 h ago.
 */
describe('the customer service window', () => {
  let stack: Stack;
  const HOUR = 3_600_000;
  const REENGAGE = { name: 'reengage', language: { code: 'en_US' } };

  beforeAll(async () => {
    stack = await startInboundStack();
  });
  afterAll(async () => {
    await stack?.stop();
  });

  const setup = () => registerNumber(stack);
  /** A customer who last wrote `agoMs` ago, as the service heard it from the simulator. */
  async function customerWrote(phone: string, agoMs: number): Promise<string> {
    const customer = uniqueDigits('1');
    expect((await stack.sim.inbound(phone, customer, { agoMs })).status).toBe(200);
    return customer;
  }
  const text = (phone: string, to: string, extra: Record<string, unknown> = {}) => ({
    phoneNumberId: phone,
    to,
    type: 'text',
    text: { body: 'your order shipped' },
    ...extra,
  });
  const send = (body: Record<string, unknown>) => sendAccepted(stack, body);
  const finalOutcome = (id: string) => finalOutcomeOf(stack, id);
  const postedTo = (phone: string, to: string) =>
    [...stack.sim.log.accepted, ...stack.sim.log.rejected].filter((m) => m.phoneNumberId === phone && m.to === to);
  const acceptedTo = (phone: string, to: string) =>
    stack.sim.log.accepted.filter((m) => m.phoneNumberId === phone && m.to === to);
  async function windowClosedCount(outcome: 'failed' | 'fallback_template'): Promise<number> {
    const values = (await stack.metrics.serviceWindowClosed.get()).values;
    return values.find((v) => v.labels.outcome === outcome)?.value ?? 0;
  }
  async function pause(wabaId: string) {
    expect(await stack.accountUpdate(wabaId, 'ACCOUNT_OFFBOARDED')).toBe(200);
    await eventually(async () => (await stack.rt.c.wabas.findOne({ _id: wabaId }))?.state === 'offboarded');
  }
  async function reconnect(wabaId: string) {
    expect(await stack.accountUpdate(wabaId, 'ACCOUNT_RECONNECTED')).toBe(200);
  }

  it('a free-form message queued for a customer who last wrote 25 h ago is never POSTed after the reconnection: failed, service_window_closed', async () => {
    const { wabaId, phone } = await setup();
    const customer = await customerWrote(phone, 25 * HOUR);
    const failedBefore = await windowClosedCount('failed');
    await pause(wabaId);
    const id = await send(text(phone, customer));
    await eventually(async () => (await stack.message(id))?.status === 'queued');
    await reconnect(wabaId);
    expect(await finalOutcome(id)).toMatchObject({ status: 'failed', reason: 'service_window_closed' });
    expect(await stack.message(id)).toMatchObject({ status: 'failed', reason: 'service_window_closed' });
    expect(postedTo(phone, customer)).toEqual([]);
    expect(await windowClosedCount('failed')).toBe(failedBefore + 1);
  });

  it('the same message with a fallbackTemplate: the template goes instead, and the message says so', async () => {
    const { wabaId, phone } = await setup();
    const customer = await customerWrote(phone, 25 * HOUR);
    const fallbackBefore = await windowClosedCount('fallback_template');
    await pause(wabaId);
    const id = await send(text(phone, customer, { fallbackTemplate: REENGAGE }));
    await eventually(async () => (await stack.message(id))?.status === 'queued');
    await reconnect(wabaId);
    expect(await finalOutcome(id)).toMatchObject({ status: 'sent', sentAs: 'fallback_template' });
    expect(await stack.message(id)).toMatchObject({ status: 'sent', sentAs: 'fallback_template' });
    const posted = postedTo(phone, customer);
    expect(posted).toHaveLength(1);
    expect(acceptedTo(phone, customer)[0]?.body).toMatchObject({ type: 'template', template: REENGAGE });
    expect(await windowClosedCount('fallback_template')).toBe(fallbackBefore + 1);
  });

  it('sends a free-form message inside the window, a template outside it, and a message to a customer never heard from', async () => {
    const { wabaId, phone } = await setup();
    const recent = await customerWrote(phone, 23 * HOUR);
    const old = await customerWrote(phone, 25 * HOUR);
    const unknown = uniqueDigits('1');
    await pause(wabaId);
    const ids = [
      await send(text(phone, recent)),
      await send({
        phoneNumberId: phone,
        to: old,
        type: 'template',
        template: { name: 'order_update', language: { code: 'en' } },
      }),
      await send(text(phone, unknown)),
    ];
    await eventually(async () => (await stack.rt.c.queue.countDocuments({ wabaId })) === 3);
    await reconnect(wabaId);
    for (const id of ids) expect(await finalOutcome(id)).toMatchObject({ status: 'sent' });
    expect(acceptedTo(phone, recent).map((m) => m.type)).toEqual(['text']);
    expect(acceptedTo(phone, old).map((m) => m.type)).toEqual(['template']);
    expect(acceptedTo(phone, unknown).map((m) => m.type)).toEqual(['text']);
  });

  it('a direct send (gate open) outside the window is not POSTed', async () => {
    const { phone } = await setup();
    const customer = await customerWrote(phone, 25 * HOUR);
    const id = await send(text(phone, customer));
    expect(await finalOutcome(id)).toMatchObject({ status: 'failed', reason: 'service_window_closed' });
    expect(postedTo(phone, customer)).toEqual([]);
  });

  it("Meta's 131047 for a customer the service had not heard from: the fallback template goes next, and later free-form messages are held back", async () => {
    const { phone } = await setup();
    // The simulator (Meta) knows the customer wrote 25 h ago; the service never got that webhook.
    stack.sim.setWebhookTarget({ targetUrl: 'http://127.0.0.1:9/nowhere', appSecret: stack.appSecret });
    const customer = uniqueDigits('1');
    try {
      expect((await stack.sim.inbound(phone, customer, { agoMs: 25 * HOUR })).status).toBeUndefined();
    } finally {
      stack.sim.setWebhookTarget({ targetUrl: stack.webhookUrl, appSecret: stack.appSecret });
    }
    const first = await send(text(phone, customer, { fallbackTemplate: REENGAGE }));
    expect(await finalOutcome(first)).toMatchObject({ status: 'sent', sentAs: 'fallback_template' });
    expect(stack.sim.log.rejected.filter((m) => m.to === customer).map((m) => m.code)).toEqual([131047]);
    expect(acceptedTo(phone, customer).map((m) => m.type)).toEqual(['template']);

    const second = await send(text(phone, customer));
    expect(await finalOutcome(second)).toMatchObject({ status: 'failed', reason: 'service_window_closed' });
    expect(postedTo(phone, customer)).toHaveLength(2); // the 131047 and the template: the second never left

    // The customer writes again: the window is open.
    await stack.sim.inbound(phone, customer);
    const third = await send(text(phone, customer));
    expect(await finalOutcome(third)).toMatchObject({ status: 'sent' });
  });
});

describe('recording inbound messages (the store alone)', () => {
  it('costs one write statement per message of a known customer, two for a new one, and never lowers the time', async () => {
    const client = new MongoClient(process.env.MONGODB_URI!, { monitorCommands: true });
    await client.connect();
    const db = client.db(`window-cost-${randomBytes(4).toString('hex')}`);
    try {
      const c = collections(db);
      await ensureIndexes(c);
      const writes: string[] = [];
      client.on('commandStarted', (e) => {
        const statements = (e.command.updates ?? e.command.documents ?? []) as unknown[];
        if (e.commandName === 'update' || e.commandName === 'insert')
          writes.push(...statements.map(() => e.commandName as string));
      });
      const at = (timestamp: number) => [{ phoneNumberId: '106540352242922', from: '15551234567', timestamp }];
      await recordInbound(c, at(1_000));
      expect(writes).toEqual(['update', 'insert']); // a new customer: the update finds nothing
      writes.length = 0;
      await recordInbound(c, at(2_000));
      await recordInbound(c, at(1_500)); // an older message, redelivered late
      expect(writes).toEqual(['update', 'update']);
      const doc = await c.customerWindows.findOne({ _id: customerWindowId('106540352242922', '15551234567') });
      expect(doc?.lastInboundAt).toBe(2_000);
    } finally {
      await db.dropDatabase().catch(() => undefined);
      await client.close();
    }
  });
});
