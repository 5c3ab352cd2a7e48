import { MongoClient } from 'mongodb';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities } from '../../src/activities';
import { insertAttempt, insertConfirmation, readAttempt } from '../../src/sending/attempts.store';
import { collections, type Collections, type SendAttemptDoc } from '../../src/adapters/store/db';
import { insertMessage } from '../../src/sending/messages.store';
import { enqueue } from '../../src/sending/queue.store';
import { createLogger } from '../../src/logger';
import { beginSend, confirmFromStatuses } from '../../src/sending/ledger';
import { REASONS, type SendRequest } from '../../src/contracts';
import { startStack, uniqueDigits, type Stack } from '../support/stack';
import { withMethod } from '../support/intercept';

/**
 * The send path's own promises, activity by activity against the real store and the simulated
 * Cloud API: a message is POSTed again by one sender at most, an `admit` attempt past its time
 * sends nothing, a send Meta accepted is never settled as failed, and a drain whose settlements
 * cannot be written stops sending and fails the attempt (the failed write was an unhandled
 * rejection that Jest does not show: the test checks what it let happen, sending on unrecorded).
 */
describe('the send ledger and its senders on the real store', () => {
  let stack: Stack;
  let c: Collections;
  const policy = { policy: 'resend_after' as const, graceMs: 1_000 };
  const logger = createLogger('silent');
  const activities = (over: Partial<Collections> = {}, drainTuning = {}) =>
    createActivities({
      c: { ...c, ...over },
      graph: stack.rt.graph,
      launch: stack.rt.launch,
      config: stack.config,
      logger,
      drainTuning,
    });
  const accepted = (phone: string) => stack.sim.log.accepted.filter((m) => m.phoneNumberId === phone);

  beforeAll(async () => {
    stack = await startStack({ noWorker: true });
    c = stack.rt.c;
  });
  afterAll(async () => {
    await stack?.stop();
  });

  /** A ledger entry as a sender left it `agoMs` ago. */
  async function entry(over: Partial<SendAttemptDoc>, agoMs = 5_000): Promise<string> {
    const key = `msg_ledger${uniqueDigits()}`;
    const doc = { _id: key, messageId: key, tries: 1, state: 'in_flight' as const, resends: 0 };
    await insertAttempt(c, { ...doc, startedAt: Date.now() - agoMs, inDoubtAt: Date.now() - agoMs, ...over });
    return key;
  }

  it('lets one of two senders reading an entry at once POST again: the in-doubt resend and the retry after a refusal', async () => {
    const keys = [
      ...(await Promise.all([1, 2, 3].map(() => entry({})))), // in doubt past the grace period
      ...(await Promise.all([1, 2, 3].map(() => entry({ state: 'answered' })))), // refused: may be retried
    ];
    for (const key of keys) {
      const both = await Promise.all([beginSend(c, key, policy), beginSend(c, key, policy)]);
      expect(both.filter((b) => b.kind === 'send')).toHaveLength(1);
      expect(both.filter((b) => b.kind === 'wait')).toHaveLength(1);
      expect((await readAttempt(c, key))?.tries).toBe(2);
    }
    // The one resend is spent: the in-doubt ones are never POSTed a third time.
    const later = await Promise.all(keys.slice(0, 3).map((k) => beginSend(c, k, { ...policy, graceMs: 0 })));
    expect(later.map((b) => b.kind)).toEqual(['give_up', 'give_up', 'give_up']);
  });

  it('passes over a claim its sender abandoned before recording it, so the message is not stopped for good', async () => {
    const key = await entry({ state: 'answered' });
    await c.sendClaims.insertOne({ _id: `${key}/2`, storedAt: new Date(Date.now() - 120_000) });
    expect(await beginSend(c, key, policy)).toEqual({ kind: 'send', resend: false });
    expect((await readAttempt(c, key))?.tries).toBe(3);
    // A fresh claim is another sender at work: wait.
    const busy = await entry({ state: 'answered' });
    await c.sendClaims.insertOne({ _id: `${busy}/2`, storedAt: new Date() });
    expect((await beginSend(c, busy, policy)).kind).toBe('wait');
  });

  async function newNumber(mps?: number): Promise<{ wabaId: string; phone: string }> {
    const wabaId = uniqueDigits();
    const phone = uniqueDigits('5');
    await stack.register(phone, wabaId, mps ? { mps } : undefined);
    return { wabaId, phone };
  }
  const request = (phone: string, body: string): SendRequest => ({
    messageId: `msg_ledger${uniqueDigits()}`,
    phoneNumberId: phone,
    to: '15550001111',
    acceptedAt: new Date().toISOString(),
    type: 'text',
    text: { body },
  });

  it('an admit attempt too close to its timeout sends nothing and is retried; one on time sends', async () => {
    const { phone } = await newNumber();
    const { admit } = activities();
    // Scheduled 45 s ago with one minute: its POST could still be out when the next attempt starts.
    const late = new MockActivityEnvironment({
      startToCloseTimeoutMs: 60_000,
      currentAttemptScheduledTimestampMs: Date.now() - 45_000,
    });
    const req = request(phone, 'late');
    await expect(late.run(admit, req)).rejects.toMatchObject({ type: 'Paced' });
    expect(accepted(phone)).toHaveLength(0);
    const onTime = new MockActivityEnvironment({
      startToCloseTimeoutMs: 60_000,
      currentAttemptScheduledTimestampMs: Date.now(),
    });
    expect(await onTime.run(admit, req)).toMatchObject({ status: 'sent' });
    expect(accepted(phone)).toHaveLength(1);
  });

  /** An `admit` attempt scheduled now, with its one minute. */
  const attemptInfo = (attempt = 1) => ({
    startToCloseTimeoutMs: 60_000,
    currentAttemptScheduledTimestampMs: Date.now(),
    attempt,
  });

  it("a direct send's answer is recorded once, by its settlement; lost before the settlement, the send is in doubt and its status settles it as sent without a second POST", async () => {
    const { phone } = await newNumber();
    // The writes of one admit, through a client of its own on the same database.
    const counting = new MongoClient(process.env.MONGODB_URI!, { monitorCommands: true });
    await counting.connect();
    const writes: string[] = [];
    counting.on('commandStarted', (e) => {
      const n = ((e.command.documents ?? e.command.updates ?? e.command.deletes ?? []) as unknown[]).length;
      if (['insert', 'update', 'delete'].includes(e.commandName)) {
        for (let i = 0; i < n; i++) writes.push(`${e.commandName} ${String(e.command[e.commandName])}`);
      }
    });
    try {
      const counted = collections(counting.db(c.messages.dbName));
      const { admit } = activities(counted);
      const env = new MockActivityEnvironment(attemptInfo());
      const one = request(phone, 'one record');
      const sent = (await env.run(admit, one)) as { status: string; wamid?: string };
      expect(sent).toMatchObject({ status: 'sent' });
      // Before: also `update send_attempts` (the answer in the ledger, then again as the settlement).
      expect(writes.sort()).toEqual([
        'insert messages',
        'insert send_attempts',
        'insert send_slots',
        'insert settlements',
      ]);
      // Its statuses find it settled: no confirmation is written for an entry left in flight.
      writes.length = 0;
      const status = { bizOpaqueCallbackData: one.messageId, wamid: sent.wamid!, status: 'delivered' };
      await confirmFromStatuses(counted, [status, { ...status, status: 'read' }]);
      expect(writes).toEqual([]);
    } finally {
      await counting.close();
    }

    // The worker dies between Meta's answer and the settlement: here, the settlement cannot be written.
    const down = new MongoClient('mongodb://127.0.0.1:1/', { serverSelectionTimeoutMS: 100 });
    const req = request(phone, 'answer lost with its worker');
    try {
      const { admit } = activities({ settlements: down.db('nowhere').collection('settlements') });
      await expect(new MockActivityEnvironment(attemptInfo()).run(admit, req)).rejects.toThrow();
    } finally {
      await down.close();
    }
    const posts = () => accepted(phone).filter((m) => m.clientId === req.messageId);
    expect(posts()).toHaveLength(1);
    // The next attempt finds the POST in flight with no answer: in doubt, not POSTed again.
    const { admit } = activities();
    const retry = () => new MockActivityEnvironment(attemptInfo(2)).run(admit, req);
    await expect(retry()).rejects.toMatchObject({ type: 'InDoubt' });
    expect((await stack.message(req.messageId))?.status).toBe('in_doubt');
    // Meta's status webhook names the send: settled as sent with its wamid, still one POST.
    await insertConfirmation(c, {
      _id: req.messageId,
      wamid: 'wamid.by_status',
      status: 'sent',
      at: new Date().toISOString(),
    });
    expect(await retry()).toMatchObject({ status: 'sent', wamid: 'wamid.by_status' });
    expect(posts()).toHaveLength(1);
  });

  it('settles as sent, not failed, a message the workflow gave up on whose send Meta accepted', async () => {
    const { wabaId, phone } = await newNumber();
    const { settleDirect } = activities();
    const at = new Date().toISOString();
    const ids: string[] = [];
    for (const how of ['answer', 'status', 'none'] as const) {
      const req = request(phone, how);
      ids.push(req.messageId);
      await insertMessage(c, {
        _id: req.messageId,
        wabaId,
        phoneNumberId: phone,
        to: req.to,
        content: { type: 'text', text: { body: how } },
        status: 'sending',
        acceptedAt: at,
        updatedAt: at,
        attempts: 2,
      });
      const ledger = { _id: req.messageId, messageId: req.messageId, tries: 1, startedAt: Date.now(), resends: 0 };
      if (how === 'answer') await insertAttempt(c, { ...ledger, state: 'answered', wamid: 'wamid.answer' });
      else await insertAttempt(c, { ...ledger, state: 'in_flight' });
      if (how === 'status') {
        await insertConfirmation(c, { _id: req.messageId, wamid: 'wamid.status', status: 'delivered', at });
      }
    }
    const outcomes = await Promise.all(
      ids.map((messageId) => settleDirect({ messageId, status: 'failed', reason: REASONS.retriesExhausted, at })),
    );
    expect(outcomes.map((o) => [o.status, o.wamid])).toEqual([
      ['sent', 'wamid.answer'],
      ['sent', 'wamid.status'],
      ['failed', undefined],
    ]);
  });

  it("a drain stops at a send that throws inside the service, and its retry sends that recipient's messages in order (the old drain dropped the send and went on with the recipient's later ones)", async () => {
    const { wabaId, phone } = await newNumber(20);
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) {
      const messageId = `msg_ledger${uniqueDigits()}`;
      ids.push(messageId);
      await enqueue(c, {
        wabaId,
        messageId,
        phoneNumberId: phone,
        to: i % 2 === 0 ? '15550007001' : '15550007002', // recipients A, B, A, B, A, B
        content: { type: 'text', text: { body: `m${i}` } },
        enqueuedAt: new Date().toISOString(),
        notify: false,
      });
    }
    // The ledger's insert for A's first message fails once: the store, not Meta.
    let failures = 0;
    const flaky = withMethod(c.sendAttempts, 'insertOne', (insertOne, doc, ...rest) => {
      if ((doc as SendAttemptDoc).messageId === ids[0] && failures++ === 0)
        return Promise.reject(new Error('store write failed'));
      return insertOne(doc, ...rest);
    });
    const first = new MockActivityEnvironment({ startToCloseTimeoutMs: 600_000, heartbeatTimeoutMs: 60_000 });
    await expect(
      first.run(activities({ sendAttempts: flaky }).drainQueue, { wabaId, mode: 'reconnected' as const }),
    ).rejects.toThrow('store write failed');
    const bodies = (to: string) =>
      accepted(phone)
        .filter((m) => m.to === to)
        .map((m) => (m.body as { text?: { body?: string } }).text?.body);
    expect(bodies('15550007001')).toEqual([]); // A's later messages did not overtake the failed one
    const retry = new MockActivityEnvironment({
      attempt: 2,
      startToCloseTimeoutMs: 600_000,
      heartbeatTimeoutMs: 60_000,
    });
    await retry.run(activities().drainQueue, { wabaId, mode: 'reconnected' as const });
    expect(bodies('15550007001')).toEqual(['m0', 'm2', 'm4']);
    expect(bodies('15550007002')).toEqual(['m1', 'm3', 'm5']); // each once: the ledger knew what had left
  }, 60_000);

  it('a drain whose settlements cannot be written stops sending and fails the attempt (it went on sending the whole queue)', async () => {
    const { wabaId, phone } = await newNumber(2);
    const total = 24; // 12 s at 2/s: longer than the settlement writes' retries (about 6 s)
    for (let i = 0; i < total; i++) {
      await enqueue(c, {
        wabaId,
        messageId: `msg_ledger${uniqueDigits()}`,
        phoneNumberId: phone,
        to: `1555000${String(i).padStart(4, '0')}`,
        content: { type: 'text', text: { body: `m${i}` } },
        enqueuedAt: new Date().toISOString(),
        notify: false,
      });
    }
    // The settlements live on a server that does not answer: every write fails.
    const down = new MongoClient('mongodb://127.0.0.1:1/', { serverSelectionTimeoutMS: 100 });
    try {
      const { drainQueue } = activities(
        { settlements: down.db('nowhere').collection('settlements') },
        { flushSize: 1, flushMs: 10 },
      );
      const env = new MockActivityEnvironment({ startToCloseTimeoutMs: 600_000, heartbeatTimeoutMs: 60_000 });
      await expect(env.run(drainQueue, { wabaId, mode: 'reconnected' as const })).rejects.toThrow();
    } finally {
      await down.close();
    }
    expect(accepted(phone).length).toBeGreaterThan(0);
    expect(accepted(phone).length).toBeLessThan(total);
  }, 60_000);
});
