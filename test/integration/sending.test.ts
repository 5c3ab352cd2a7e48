import { Client } from '@temporalio/client';
import { MongoClient } from 'mongodb';
import { sendWorkflowId, type SendRequest } from '../../src/contracts';
import { collections } from '../../src/adapters/store/db';
import { GATE_VERDICT_REUSE_MS, createAdmission } from '../../src/sending/admission';
import { createSendActivities, type SendDeps } from '../../src/sending/send.activities';
import { createSenderClient } from '../../src/sending/launch';
import { statusPayload } from '../../tools/meta-sim/payloads';
import { SEND_KEY, eventually, startStack, uniqueDigits, type Stack } from '../support/stack';
import { expectRecipientFirstsInQueueOrder } from '../support/delivery';

describe('sending on the real stack', () => {
  let stack: Stack;

  beforeAll(async () => {
    stack = await startStack();
  });
  afterAll(async () => {
    await stack?.stop();
  });

  async function setup(opts: { mps?: number; coexistence?: boolean } = {}) {
    const wabaId = uniqueDigits();
    const phone = uniqueDigits('3');
    await stack.register(phone, wabaId, { coexistence: true, ...opts });
    return { wabaId, phone };
  }
  const text = (phone: string, body: string, to = '15551230000', extra: Record<string, unknown> = {}) => ({
    phoneNumberId: phone,
    to,
    type: 'text',
    text: { body },
    ...extra,
  });
  const message = (id: string) => stack.message(id);
  const finalOutcome = (id: string) => stack.rt.temporal.workflow.getHandle(sendWorkflowId(id)).result();
  const acceptedFor = (phone: string) => stack.sim.log.accepted.filter((m) => m.phoneNumberId === phone);

  /** The stack's store through a client of its own that lists the collection of every `find` it sends. */
  async function countingStore() {
    const client = new MongoClient(process.env.MONGODB_URI!, { monitorCommands: true });
    await client.connect();
    const reads: string[] = [];
    client.on('commandStarted', (e) => {
      if (e.commandName === 'find') reads.push(String(e.command.find));
    });
    return { c: collections(client.db(stack.rt.db.databaseName)), reads, close: () => client.close() };
  }
  const admissionOver = (c: Stack['rt']['c']) =>
    createAdmission({ c, launch: stack.rt.launch, logger: stack.logger, graph: stack.config.graph });
  const newRequest = (phone: string, name: string): SendRequest => ({
    messageId: `msg_${name}_${uniqueDigits()}`,
    phoneNumberId: phone,
    to: '15550007779',
    acceptedAt: new Date().toISOString(),
    type: 'text',
    text: { body: name },
  });

  it('sends at once while the gate is open and shows the wamid', async () => {
    const { phone } = await setup();
    const r = await stack.send(text(phone, 'hello'));
    expect(r.status).toBe(202);
    expect(r.json).toMatchObject({ status: 'accepted' });
    const outcome = await finalOutcome(r.json.id as string);
    expect(outcome.status).toBe('sent');
    expect(outcome.wamid).toMatch(/^wamid\./);
    const got = await stack.send({}, undefined);
    expect(got.status).toBe(400);
    const view = await fetch(`${stack.url}/v1/messages/${String(r.json.id)}`, {
      headers: { authorization: `Bearer ${SEND_KEY}` },
    });
    expect(await view.json()).toMatchObject({ id: r.json.id, status: 'sent', wamid: outcome.wamid });
  });

  it('never sends twice for one Idempotency-Key, and replays the first answer', async () => {
    const { phone } = await setup();
    const body = text(phone, 'once');
    const [a, b] = await Promise.all([stack.send(body, 'key-1'), stack.send(body, 'key-1')]);
    const c = await stack.send(body, 'key-1');
    expect(a.status).toBe(202);
    expect(b.json.id).toBe(a.json.id);
    expect(c.json.id).toBe(a.json.id);
    await finalOutcome(a.json.id as string);
    expect(acceptedFor(phone)).toHaveLength(1);
    const reused = await stack.send(text(phone, 'different'), 'key-1');
    expect(reused.status).toBe(422);
    expect(reused.json).toMatchObject({ error: { code: 'idempotency_key_reused' } });
  });

  it('replays the first 202 for an Idempotency-Key after the gate began refusing (a new key gets the 409)', async () => {
    const { wabaId, phone } = await setup();
    const first = await stack.send(text(phone, 'before removal'), 'key-removed');
    expect(first.status).toBe(202);
    expect(
      await stack.accountUpdate(wabaId, 'PARTNER_REMOVED', {
        disconnectionInfo: { reason: 'ACCOUNT_DISCONNECTED', initiated_by: 'USER' },
      }),
    ).toBe(200);
    await eventually(async () => (await stack.lifecycleState(wabaId))?.state === 'partner_removed');
    const replay = await stack.send(text(phone, 'before removal'), 'key-removed');
    expect(replay).toMatchObject({ status: 202, json: { id: first.json.id } });
    expect((await stack.send(text(phone, 'after removal'), 'key-new')).status).toBe(409);
  });

  it('answers bad input with field-level 400s and an unknown number with 422', async () => {
    const { phone } = await setup();
    const bad = await stack.send({ phoneNumberId: phone, to: 'abc', type: 'text' });
    expect(bad.status).toBe(400);
    const paths = (bad.json.error as { details: { issues: { path: string }[] } }).details.issues.map((i) => i.path);
    expect(paths).toEqual(expect.arrayContaining(['to', 'text']));
    const unknown = await stack.send(text('999000111', 'x'));
    expect(unknown.status).toBe(422);
    expect(unknown.json).toMatchObject({ error: { code: 'unknown_phone_number' } });
    const noKey = await fetch(`${stack.url}/v1/messages`, { method: 'POST', body: '{}' });
    expect(noKey.status).toBe(401);
  });

  it('fails a message on a permanent Meta error with Meta code and text', async () => {
    const { phone } = await setup();
    stack.sim.scriptErrors(phone, [{ code: 131026, details: 'Message undeliverable' }]);
    const r = await stack.send(text(phone, 'nope'));
    const outcome = await finalOutcome(r.json.id as string);
    expect(outcome).toMatchObject({ status: 'failed', error: { code: 131026 } });
    expect(acceptedFor(phone)).toHaveLength(0);
  });

  it('retries retryable errors (5xx) and then sends', async () => {
    const { phone } = await setup();
    stack.sim.failNext(phone, 2, 503);
    const r = await stack.send(text(phone, 'after retries'));
    const outcome = await finalOutcome(r.json.id as string);
    expect(outcome.status).toBe('sent');
    expect((await message(r.json.id as string))?.attempts).toBeGreaterThanOrEqual(3);
    expect(acceptedFor(phone)).toHaveLength(1);
  });

  it('re-pauses on an "account unusable" error: the message is queued, the gate closes, and reconnect delivers it', async () => {
    const { wabaId, phone } = await setup();
    stack.sim.setMode(phone, 'offboarded', { code: 133010 });
    const r = await stack.send(text(phone, 'held by Meta'));
    await eventually(async () => (await stack.rt.c.wabas.findOne({ _id: wabaId }))?.state === 'offboarded');
    await eventually(async () => (await message(r.json.id as string))?.status === 'queued');
    stack.sim.setMode(phone, 'normal');
    await stack.accountUpdate(wabaId, 'ACCOUNT_RECONNECTED');
    const outcome = await finalOutcome(r.json.id as string);
    expect(outcome.status).toBe('sent');
    expect(acceptedFor(phone)).toHaveLength(1);
  });

  it("delivers every message exactly once across a pause, in each recipient's order, new sends queueing behind the drain", async () => {
    const { wabaId, phone } = await setup({ mps: 20 });
    stack.sim.setNumber(phone, { throughputPerSec: 20 });
    await stack.accountUpdate(wabaId, 'ACCOUNT_OFFBOARDED');
    await eventually(async () => (await stack.rt.c.wabas.findOne({ _id: wabaId }))?.state === 'offboarded');
    const ids: string[] = [];
    for (let i = 0; i < 30; i++)
      ids.push((await stack.send(text(phone, `q${i}`, `1555000${i % 3}000`))).json.id as string);
    await eventually(async () => (await stack.rt.c.queue.countDocuments({ wabaId })) === 30);

    await stack.accountUpdate(wabaId, 'ACCOUNT_RECONNECTED');
    // Sent while draining: they queue behind the drain (their recipients' order, below).
    await eventually(async () => acceptedFor(phone).length > 0);
    for (let i = 30; i < 35; i++)
      ids.push((await stack.send(text(phone, `q${i}`, `1555000${i % 3}000`))).json.id as string);

    const outcomes = await Promise.all(ids.map(finalOutcome));
    expect(outcomes.every((o) => o.status === 'sent')).toBe(true);
    const bodies = acceptedFor(phone).map((m) => (m.body as { text: { body: string } }).text.body);
    expect(bodies).toHaveLength(35);
    expect(new Set(bodies).size).toBe(35);
    // DRAIN_ORDER=recipient (the default): each recipient's messages strictly in acceptance order,
    // the drained ones and those queued behind the drain alike; the WABA's whole queue as far as the
    // drain promises it (a message waiting for its recipient's previous one lets later ones pass:
    // expectRecipientFirstsInQueueOrder; drain-order.test covers the exact order of DRAIN_ORDER=waba).
    for (let r = 0; r < 3; r++) {
      const own = ids.map((_, i) => i).filter((i) => i % 3 === r);
      expect(bodies.filter((b) => own.includes(Number(b.slice(1))))).toEqual(own.map((i) => `q${i}`));
    }
    expectRecipientFirstsInQueueOrder(
      ids.map((_, i) => ({ id: `q${i}`, to: `1555000${i % 3}000` })),
      bodies,
    );
    // Never above the number's cap where Meta judges it: no second with more than 20 sends arriving
    // (the refused ones too), no 130429.
    const stats = stack.sim.receiverStats(phone);
    expect(stats.maxAttemptsPerWindow).toBeLessThanOrEqual(20);
    expect(stats.throttled).toBe(0);
  });

  it("keeps a recipient's order when Meta throttles one of its queued messages (130429, then retried)", async () => {
    const { wabaId, phone } = await setup({ mps: 20 });
    await stack.accountUpdate(wabaId, 'ACCOUNT_OFFBOARDED');
    await eventually(async () => (await stack.rt.c.wabas.findOne({ _id: wabaId }))?.state === 'offboarded');
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) ids.push((await stack.send(text(phone, `t${i}`, '15550007000'))).json.id as string);
    // The drain's first POST answers 130429: that message is retried after the number's pause,
    // and its recipient's next messages may not overtake it.
    stack.sim.scriptErrors(phone, [{ code: 130429 }]);
    await stack.accountUpdate(wabaId, 'ACCOUNT_RECONNECTED');
    const outcomes = await Promise.all(ids.map(finalOutcome));
    expect(outcomes.map((o) => o.status)).toEqual(ids.map(() => 'sent'));
    expect(stack.sim.receiverStats(phone).throttled).toBe(1);
    const bodies = acceptedFor(phone).map((m) => (m.body as { text: { body: string } }).text.body);
    expect(bodies).toEqual(ids.map((_, i) => `t${i}`));
  });

  it('expires a queued message whose expiresAt passed before the drain, without sending it', async () => {
    const { wabaId, phone } = await setup();
    await stack.accountUpdate(wabaId, 'ACCOUNT_OFFBOARDED');
    await eventually(async () => (await stack.rt.c.wabas.findOne({ _id: wabaId }))?.state === 'offboarded');
    const r = await stack.send(
      text(phone, 'short-lived', undefined, { expiresAt: new Date(Date.now() + 1_500).toISOString() }),
    );
    await eventually(async () => (await message(r.json.id as string))?.status === 'queued');
    await new Promise((res) => setTimeout(res, 1_600));
    await stack.accountUpdate(wabaId, 'ACCOUNT_RECONNECTED');
    const outcome = await finalOutcome(r.json.id as string);
    expect(outcome).toMatchObject({ status: 'expired', reason: 'expired' });
    expect(acceptedFor(phone)).toHaveLength(0);
  });

  it('records delivery statuses from webhooks, and a failed status meaning "account unusable" closes the gate', async () => {
    const { wabaId, phone } = await setup();
    const r = await stack.send(text(phone, 'tracked'));
    const outcome = await finalOutcome(r.json.id as string);
    const to = '15551230000';
    expect(
      await stack.webhook(statusPayload(wabaId, phone, [{ id: outcome.wamid!, status: 'delivered', recipientId: to }])),
    ).toBe(200);
    expect(
      await stack.webhook(statusPayload(wabaId, phone, [{ id: outcome.wamid!, status: 'read', recipientId: to }])),
    ).toBe(200);
    const view = await fetch(`${stack.url}/v1/messages/${String(r.json.id)}`, {
      headers: { authorization: `Bearer ${SEND_KEY}` },
    });
    expect(await view.json()).toMatchObject({ status: 'sent', deliveryStatus: 'read' });

    expect(
      await stack.webhook(
        statusPayload(wabaId, phone, [
          { id: outcome.wamid!, status: 'failed', recipientId: to, errors: [{ code: 131031 }] },
        ]),
      ),
    ).toBe(200);
    await eventually(async () => (await stack.rt.c.wabas.findOne({ _id: wabaId }))?.state === 'offboarded');
  });

  it('lets a sender use the typed Temporal client directly', async () => {
    const { phone } = await setup();
    const sender = createSenderClient({ client: stack.rt.temporal, taskQueue: stack.config.temporal.taskQueue });
    const { messageId } = await sender.send({
      phoneNumberId: phone,
      to: '15557654321',
      type: 'text',
      text: { body: 'typed' },
    });
    const outcome = await sender.result(messageId);
    expect(outcome.status).toBe('sent');
    const unknown = await sender.send({ phoneNumberId: '123', to: '15557654321', type: 'text', text: { body: 'x' } });
    expect(await sender.result(unknown.messageId)).toMatchObject({ status: 'failed', reason: 'unknown_phone_number' });
  });

  it('a run admitting a message the API queued (the API failed before starting it; a replay did) answers queued and queues nothing twice', async () => {
    const { wabaId, phone } = await setup();
    await stack.accountUpdate(wabaId, 'ACCOUNT_OFFBOARDED');
    await eventually(async () => (await stack.rt.c.wabas.findOne({ _id: wabaId }))?.state === 'offboarded');
    const admission = createAdmission({
      c: stack.rt.c,
      launch: stack.rt.launch,
      logger: stack.logger,
      graph: stack.config.graph,
    });
    const req: SendRequest = {
      messageId: `msg_replayed_${uniqueDigits()}`,
      phoneNumberId: phone,
      to: '15550007778',
      acceptedAt: new Date().toISOString(),
      type: 'text',
      text: { body: 'queued by the API, admitted by a replay' },
    };
    expect(await admission.acceptNew(req, wabaId, { kind: 'queue' })).toBe(true);
    // The API does not record where the entry sits (its own run never admits the message).
    expect((await stack.rt.c.messages.findOne({ _id: req.messageId }))?.queueEntryId).toBeUndefined();
    expect(await admission.admitMessage(req)).toMatchObject({ kind: 'done', outcome: { status: 'queued' } });
    expect(await stack.rt.c.queue.countDocuments({ messageId: req.messageId })).toBe(1);
  });

  it("admit's first attempt acts on the API's open verdict while it is fresh, reading neither the gate nor the message; a later or retried attempt reads both", async () => {
    const { wabaId, phone } = await setup();
    const store = await countingStore();
    try {
      const admission = admissionOver(store.c);
      // The gate closes after the API read it open: the API's verdict is then a wrong "open".
      await stack.accountUpdate(wabaId, 'ACCOUNT_OFFBOARDED');
      await eventually(async () => (await stack.rt.c.wabas.findOne({ _id: wabaId }))?.state === 'offboarded');
      const recordedOpen = async (name: string, gateOpenAt: number): Promise<SendRequest> => {
        const req = newRequest(phone, name);
        expect(await admission.acceptNew(req, wabaId, { kind: 'send' })).toBe(true);
        return { ...req, recorded: true, gateOpenAt };
      };
      const first = { attempt: 1, scheduledAt: Date.now() };

      const fresh = await recordedOpen('fresh', Date.now());
      store.reads.length = 0;
      expect(await admission.admitMessage(fresh, first)).toMatchObject({ kind: 'send', wabaId });
      // Only the number (cached by the admission; read once here) was looked up.
      expect(store.reads.filter((r) => r !== 'phone_numbers')).toEqual([]);

      // Older than the bound, or a retry: the gate is read again and the message queued.
      const stale = await recordedOpen('stale', Date.now() - GATE_VERDICT_REUSE_MS - 50);
      store.reads.length = 0;
      expect(await admission.admitMessage(stale, first)).toMatchObject({ kind: 'done', outcome: { status: 'queued' } });
      expect(store.reads).toEqual(expect.arrayContaining(['messages', 'settlements', 'wabas']));
      const retried = await recordedOpen('retried', Date.now());
      expect(await admission.admitMessage(retried, { attempt: 2, scheduledAt: Date.now() })).toMatchObject({
        kind: 'done',
        outcome: { status: 'queued' },
      });
    } finally {
      await store.close();
    }
  });

  it('the stray check after queueing on a closed gate reads the WABA state only; a queued run reads only the settlement', async () => {
    const { wabaId, phone } = await setup();
    await stack.accountUpdate(wabaId, 'ACCOUNT_OFFBOARDED');
    await eventually(async () => (await stack.rt.c.wabas.findOne({ _id: wabaId }))?.state === 'offboarded');
    const store = await countingStore();
    try {
      const req = newRequest(phone, 'closed');
      store.reads.length = 0;
      expect(await admissionOver(store.c).acceptNew(req, wabaId, { kind: 'queue' })).toBe(true);
      // Of the gate (state, hold, token pause) the stray check reads the state alone: it closes the gate.
      const gate = ['wabas', 'gate_holds', 'credential_pauses'];
      expect(store.reads.filter((r) => gate.includes(r))).toEqual(['wabas']);
      expect(await stack.rt.c.outbox.countDocuments({ kind: 'stray', wabaIds: wabaId })).toBe(0);

      const acts = createSendActivities({ c: store.c } as unknown as SendDeps);
      store.reads.length = 0;
      expect(await acts.getMessageOutcome(req.messageId, req.acceptedAt)).toEqual({
        messageId: req.messageId,
        status: 'queued',
        at: req.acceptedAt,
      });
      expect(store.reads).toEqual(['settlements']);
      await stack.rt.c.settlements.insertOne({
        _id: req.messageId,
        status: 'failed',
        reason: 'cancelled_by_test',
        at: new Date().toISOString(),
      });
      expect(await acts.getMessageOutcome(req.messageId, req.acceptedAt)).toMatchObject({
        status: 'failed',
        reason: 'cancelled_by_test',
      });
    } finally {
      await store.close();
    }
  });

  it('a message queued as the gate reopened reaches the lifecycle workflow through the outbox, even when Temporal refuses a signal', async () => {
    const { wabaId, phone } = await setup();
    // Every signal through this launch fails (no such namespace): the stray must not depend on one.
    const refusing = new Client({ connection: stack.rt.temporal.connection, namespace: 'no-such-namespace' });
    const admission = createAdmission({
      c: stack.rt.c,
      launch: { ...stack.rt.launch, client: refusing },
      logger: stack.logger,
      graph: stack.config.graph,
    });
    const req: SendRequest = {
      messageId: `msg_stray_${uniqueDigits()}`,
      phoneNumberId: phone,
      to: '15550007777',
      acceptedAt: new Date().toISOString(),
      type: 'text',
      text: { body: 'queued as the gate reopened' },
    };
    // The sender read "closed"; the gate is open by the time its entry lands (the WABA is connected).
    // Before: the QUEUE_STRAY went as a bare signal, which threw here and left the entry queued.
    await admission.acceptNew(req, wabaId, { kind: 'queue' });
    await eventually(async () => (await stack.message(req.messageId))?.status === 'sent');
    expect(await stack.rt.c.queue.countDocuments({ wabaId })).toBe(0);
  });
});
