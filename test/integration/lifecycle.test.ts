import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { wabaWorkflowId } from '../../src/contracts';
import { eventually, startStack, uniqueDigits, type Stack } from '../support/stack';

/** A local HTTP receiver standing in for the operators' alert webhook and Slack. */
async function startReceiver() {
  const bodies: { path: string; body: Record<string, unknown> }[] = [];
  let failNext = 0;
  const server = http.createServer((req, res) => {
    let data = '';
    req.on('data', (c: Buffer) => (data += c.toString()));
    req.on('end', () => {
      if (failNext > 0) {
        failNext--;
        res.statusCode = 500;
        return res.end();
      }
      bodies.push({ path: req.url ?? '', body: JSON.parse(data) as Record<string, unknown> });
      res.end('ok');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    bodies,
    failNextRequests: (n: number) => (failNext = n),
    stop: () => new Promise((r) => server.close(r)),
  };
}

describe('per-WABA lifecycle on the real stack', () => {
  let stack: Stack;
  let alerts: Awaited<ReturnType<typeof startReceiver>>;

  beforeAll(async () => {
    alerts = await startReceiver();
    stack = await startStack({
      env: {
        ESCALATION_LEVELS: '2s,4s,6s',
        ALERT_WEBHOOK_URL: `${alerts.url}/alerts`,
        SLACK_WEBHOOK_URL: `${alerts.url}/slack`,
      },
    });
  });
  afterAll(async () => {
    await stack?.stop();
    await alerts?.stop();
  });

  const wabaDoc = (wabaId: string) => stack.rt.c.wabas.findOne({ _id: wabaId });
  const state = async (wabaId: string) => (await wabaDoc(wabaId))?.state;

  async function numberFor(wabaId: string): Promise<string> {
    const phone = uniqueDigits('2');
    await stack.register(phone, wabaId, { coexistence: true });
    return phone;
  }

  it('closes the gate on ACCOUNT_OFFBOARDED, queues sends, and drains them in order after ACCOUNT_RECONNECTED', async () => {
    const wabaId = uniqueDigits();
    const phone = await numberFor(wabaId);
    expect(await stack.accountUpdate(wabaId, 'ACCOUNT_OFFBOARDED')).toBe(200);
    await eventually(async () => (await state(wabaId)) === 'offboarded');

    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await stack.send({ phoneNumberId: phone, to: '15550001111', type: 'text', text: { body: `m${i}` } });
      expect(r.status).toBe(202);
      ids.push(r.json.id as string);
    }
    await eventually(async () => (await stack.rt.c.queue.countDocuments({ wabaId })) === 5);
    expect(stack.sim.log.accepted.filter((m) => m.phoneNumberId === phone)).toHaveLength(0);
    const ops = await stack.ops('GET', `/v1/wabas/${wabaId}`);
    expect(ops.json).toMatchObject({ state: 'offboarded', queued: 5, escalationLevel: 0 });

    expect(await stack.accountUpdate(wabaId, 'ACCOUNT_RECONNECTED')).toBe(200);
    await eventually(async () => (await state(wabaId)) === 'connected');
    const sent = stack.sim.log.accepted.filter((m) => m.phoneNumberId === phone);
    expect(sent.map((m) => (m.body as { text: { body: string } }).text.body)).toEqual(['m0', 'm1', 'm2', 'm3', 'm4']);
    for (const id of ids) expect((await stack.message(id))?.status).toBe('sent');
    expect(await stack.rt.c.queue.countDocuments({ wabaId })).toBe(0);
    // The run completes once connected; the re-link notice went out.
    await stack.rt.temporal.workflow.getHandle(wabaWorkflowId(wabaId)).result();
    await eventually(async () =>
      alerts.bodies.some(
        (b) => b.path === '/alerts' && b.body.wabaId === wabaId && String(b.body.text).includes('re-link'),
      ),
    );
  });

  it('handles every account_update of a batched delivery, and records unknown events without acting', async () => {
    const [a, b] = [uniqueDigits(), uniqueDigits()];
    const time = Math.floor(Date.now() / 1000);
    const body = {
      object: 'whatsapp_business_account',
      entry: [
        {
          id: a,
          time,
          changes: [
            { field: 'account_update', value: { event: 'ACCOUNT_OFFBOARDED' } },
            { field: 'account_update', value: { event: 'MM_LITE_TERMS_SIGNED' } },
          ],
        },
        { id: b, time, changes: [{ field: 'account_update', value: { event: 'ACCOUNT_OFFBOARDED' } }] },
        { id: b, time, changes: [{ field: 'history', value: { history: [] } }] },
      ],
    };
    expect(await stack.webhook(body)).toBe(200);
    await eventually(async () => (await state(a)) === 'offboarded' && (await state(b)) === 'offboarded');
    const unknown = await eventually(
      async () => (await stack.rt.c.accountEvents.findOne({ wabaId: a, event: 'MM_LITE_TERMS_SIGNED' })) ?? undefined,
    );
    expect(unknown?.outcome).toBe('recorded');
    for (const w of [a, b]) {
      await stack.accountUpdate(w, 'ACCOUNT_RECONNECTED', { time: time + 5 });
      await eventually(async () => (await state(w)) === 'connected');
    }
  });

  it('treats a duplicate ACCOUNT_OFFBOARDED delivery as one event and audits it once', async () => {
    const wabaId = uniqueDigits();
    const time = Math.floor(Date.now() / 1000);
    expect(await stack.accountUpdate(wabaId, 'ACCOUNT_OFFBOARDED', { time })).toBe(200);
    expect(await stack.accountUpdate(wabaId, 'ACCOUNT_OFFBOARDED', { time })).toBe(200);
    await eventually(async () => (await state(wabaId)) === 'offboarded');
    const audit = await stack.rt.c.accountEvents.find({ wabaId }).toArray();
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({ event: 'ACCOUNT_OFFBOARDED', outcome: 'signalled', metaTime: time });
    const doc = await wabaDoc(wabaId);
    expect(doc?.events.filter((e) => e.type === 'ACCOUNT_OFFBOARDED')).toHaveLength(1);
    await stack.accountUpdate(wabaId, 'ACCOUNT_RECONNECTED', { time: time + 1 });
    await eventually(async () => (await state(wabaId)) === 'connected');
  });

  it('does not pause when ACCOUNT_RECONNECTED arrives before an earlier-timed ACCOUNT_OFFBOARDED', async () => {
    const wabaId = uniqueDigits();
    const t = Math.floor(Date.now() / 1000);
    expect(await stack.accountUpdate(wabaId, 'ACCOUNT_RECONNECTED', { time: t + 60 })).toBe(200);
    await eventually(async () => (await wabaDoc(wabaId))?.lastReconnectedMetaTime === t + 60);
    expect(await stack.accountUpdate(wabaId, 'ACCOUNT_OFFBOARDED', { time: t })).toBe(200);
    await eventually(async () => (await wabaDoc(wabaId))?.events.some((e) => e.type === 'ACCOUNT_OFFBOARDED'));
    const doc = await wabaDoc(wabaId);
    expect(doc?.state).toBe('connected');
    expect(doc?.events.find((e) => e.type === 'ACCOUNT_OFFBOARDED')?.outcome).toMatch(/^stale/);
  });

  it('without Meta times, follows arrival order: a reconnect then an offboard leaves the WABA paused', async () => {
    const wabaId = uniqueDigits();
    expect(await stack.accountUpdate(wabaId, 'ACCOUNT_RECONNECTED', { noTime: true })).toBe(200);
    await eventually(async () => (await wabaDoc(wabaId))?.events.some((e) => e.type === 'ACCOUNT_RECONNECTED'));
    expect(await stack.accountUpdate(wabaId, 'ACCOUNT_OFFBOARDED', { noTime: true })).toBe(200);
    await eventually(async () => (await state(wabaId)) === 'offboarded');
    // (Without a time, a second identical ACCOUNT_RECONNECTED would be taken for a redelivery.)
    await stack.accountUpdate(wabaId, 'ACCOUNT_RECONNECTED', { time: Math.floor(Date.now() / 1000) });
    await eventually(async () => (await state(wabaId)) === 'connected');
  });

  it('escalates in levels, abandons at the last one (failing the queue), and still reopens on a later reconnect', async () => {
    const wabaId = uniqueDigits();
    const phone = await numberFor(wabaId);
    alerts.failNextRequests(1); // the first delivery to a sink fails: it is retried, the workflow goes on
    await stack.accountUpdate(wabaId, 'ACCOUNT_OFFBOARDED');
    await eventually(async () => (await state(wabaId)) === 'offboarded');
    const queued = await stack.send({ phoneNumberId: phone, to: '15550002222', type: 'text', text: { body: 'held' } });
    expect(queued.status).toBe(202);

    await eventually(async () => (await stack.lifecycleState(wabaId))?.escalationLevel === 1, 10_000);
    // Operators find it in Temporal UI by the search attributes the workflow keeps current.
    await eventually(async () => {
      const query = `WabaId = "${wabaId}" AND WabaState = "offboarded" AND EscalationLevel >= 1`;
      for await (const wf of stack.rt.temporal.workflow.list({ query }))
        return wf.workflowId === wabaWorkflowId(wabaId);
      return false;
    }, 10_000);
    await eventually(async () => (await wabaDoc(wabaId))?.escalationLevel === 2, 10_000);
    await eventually(async () => (await state(wabaId)) === 'reconnect_abandoned', 15_000);
    const msg = await eventually(async () => {
      const m = await stack.message(queued.json.id as string);
      return m?.status === 'failed' ? m : undefined;
    });
    expect(msg.reason).toBe('reconnect_timeout');

    const mine = () => alerts.bodies.filter((b) => b.path === '/alerts' && b.body.wabaId === wabaId);
    await eventually(async () => mine().length >= 3);
    expect(mine().map((b) => b.body.level)).toEqual(expect.arrayContaining([1, 2, 3]));
    expect(alerts.bodies.some((b) => b.path === '/slack' && String(b.body.text).includes(wabaId))).toBe(true);

    // Sends are refused while abandoned (ON_ABANDON=fail) …
    const refused = await stack.send({ phoneNumberId: phone, to: '15550002222', type: 'text', text: { body: 'x' } });
    expect(refused.status).toBe(409);
    // … and a late reconnection still reopens the gate.
    await stack.accountUpdate(wabaId, 'ACCOUNT_RECONNECTED');
    await eventually(async () => (await state(wabaId)) === 'connected');
  });

  it('lets an operator force-resume an abandoned WABA whose run has ended', async () => {
    const wabaId = uniqueDigits();
    await stack.accountUpdate(wabaId, 'ACCOUNT_OFFBOARDED');
    await eventually(async () => (await state(wabaId)) === 'reconnect_abandoned', 20_000);
    await stack.rt.temporal.workflow.getHandle(wabaWorkflowId(wabaId)).result(); // no run open now
    const r = await stack.ops('POST', `/v1/wabas/${wabaId}/actions`, {
      action: 'force_resume',
      reason: 'Meta support confirmed',
    });
    expect(r.status).toBe(200);
    await eventually(async () => (await state(wabaId)) === 'connected');
  });

  it('on PARTNER_REMOVED during a pause fails the queue, refuses new sends, and stays removed', async () => {
    const wabaId = uniqueDigits();
    const phone = await numberFor(wabaId);
    await stack.accountUpdate(wabaId, 'ACCOUNT_OFFBOARDED');
    await eventually(async () => (await state(wabaId)) === 'offboarded');
    const queued = await stack.send({ phoneNumberId: phone, to: '15550003333', type: 'text', text: { body: 'q' } });
    await eventually(async () => (await stack.rt.c.queue.countDocuments({ wabaId })) === 1);

    await stack.accountUpdate(wabaId, 'PARTNER_REMOVED', {
      disconnectionInfo: { reason: 'ACCOUNT_DISCONNECTED', initiated_by: 'USER' },
    });
    await eventually(async () => (await state(wabaId)) === 'partner_removed');
    const msg = await eventually(async () => {
      const m = await stack.message(queued.json.id as string);
      return m?.status === 'failed' ? m : undefined;
    });
    expect(msg.reason).toBe('partner_removed');
    const refused = await stack.send({ phoneNumberId: phone, to: '15550003333', type: 'text', text: { body: 'r' } });
    expect(refused.status).toBe(409);
    expect(refused.json).toMatchObject({ error: { code: 'partner_removed' } });

    await stack.accountUpdate(wabaId, 'ACCOUNT_RECONNECTED');
    await eventually(async () => (await wabaDoc(wabaId))?.events.some((e) => e.type === 'ACCOUNT_RECONNECTED'));
    expect(await state(wabaId)).toBe('partner_removed');
  });

  it.each([
    ['PARTNER_REMOVED (USER_RE_REGISTERED) alone', ['removal']],
    ['PARTNER_REMOVED (USER_RE_REGISTERED), then ACCOUNT_OFFBOARDED', ['removal', 'offboarding']],
    ['ACCOUNT_OFFBOARDED, then PARTNER_REMOVED (USER_RE_REGISTERED)', ['offboarding', 'removal']],
  ] as const)(
    '%s is a pause: sends queue (202), ACCOUNT_RECONNECTED sends every queued one in order',
    async (_, order) => {
      const wabaId = uniqueDigits();
      const phone = await numberFor(wabaId);
      for (const e of order) {
        const status =
          e === 'removal'
            ? await stack.accountUpdate(wabaId, 'PARTNER_REMOVED', {
                disconnectionInfo: { reason: 'USER_RE_REGISTERED', initiated_by: 'USER' },
              })
            : await stack.accountUpdate(wabaId, 'ACCOUNT_OFFBOARDED');
        expect(status).toBe(200);
      }
      await eventually(async () => (await wabaDoc(wabaId))?.events.length === order.length);
      expect(await state(wabaId)).toBe('offboarded');
      const view = await stack.ops('GET', `/v1/wabas/${wabaId}`);
      expect(view.json).toMatchObject({ state: 'offboarded', disconnectionInfo: { reason: 'USER_RE_REGISTERED' } });
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) {
        const r = await stack.send({ phoneNumberId: phone, to: '15550004444', type: 'text', text: { body: `p${i}` } });
        expect(r.status).toBe(202);
        ids.push(r.json.id as string);
      }
      await eventually(async () => (await stack.rt.c.queue.countDocuments({ wabaId })) === 3);
      await stack.accountUpdate(wabaId, 'ACCOUNT_RECONNECTED');
      await eventually(async () =>
        (await Promise.all(ids.map((id) => stack.message(id)))).every((m) => m?.status === 'sent'),
      );
      const arrived = stack.sim.log.accepted.filter((m) => m.phoneNumberId === phone).map((m) => m.clientId);
      expect(arrived).toEqual(ids);
      await eventually(async () => (await state(wabaId)) === 'connected');
    },
  );

  it('marks a WABA partner_removed even with no run open', async () => {
    const wabaId = uniqueDigits();
    await stack.accountUpdate(wabaId, 'PARTNER_REMOVED', {
      disconnectionInfo: { reason: 'ACCOUNT_DISCONNECTED', initiated_by: 'USER' },
    });
    await eventually(async () => (await state(wabaId)) === 'partner_removed');
  });

  it('gives each offboarding cycle a fresh run under the same workflow id', async () => {
    const wabaId = uniqueDigits();
    const runs: string[] = [];
    for (let cycle = 0; cycle < 2; cycle++) {
      await stack.accountUpdate(wabaId, 'ACCOUNT_OFFBOARDED', { time: 1_000 * (cycle + 1) });
      await eventually(async () => (await state(wabaId)) === 'offboarded');
      const handle = stack.rt.temporal.workflow.getHandle(wabaWorkflowId(wabaId));
      runs.push((await handle.describe()).runId);
      await stack.accountUpdate(wabaId, 'ACCOUNT_RECONNECTED', { time: 1_000 * (cycle + 1) + 10 });
      await eventually(async () => (await state(wabaId)) === 'connected');
      await handle.result();
    }
    expect(new Set(runs).size).toBe(2);
  });

  it('lets an operator force-resume a paused WABA, with the reason recorded', async () => {
    const wabaId = uniqueDigits();
    await stack.accountUpdate(wabaId, 'ACCOUNT_OFFBOARDED');
    await eventually(async () => (await state(wabaId)) === 'offboarded');
    const bad = await stack.ops('POST', `/v1/wabas/${wabaId}/actions`, { action: 'force_abandon' });
    expect(bad.status).toBe(400);
    const r = await stack.ops('POST', `/v1/wabas/${wabaId}/actions`, {
      action: 'force_resume',
      reason: 'client confirmed by phone',
      operator: 'ana',
    });
    expect(r.status).toBe(200);
    await eventually(async () => (await state(wabaId)) === 'connected');
    const doc = await wabaDoc(wabaId);
    expect(doc?.events.find((e) => e.type === 'OPERATOR_FORCE_RESUME')?.detail).toBe(
      'client confirmed by phone (by ana)',
    );
    const listed = await stack.ops('GET', '/v1/wabas?state=connected');
    expect((listed.json.wabas as { wabaId: string }[]).some((w) => w.wabaId === wabaId)).toBe(true);
    const again = await stack.ops('POST', `/v1/wabas/${wabaId}/actions`, {
      action: 'force_resume',
      reason: 'once more',
    });
    expect(again.status).toBe(409);
  });
});
