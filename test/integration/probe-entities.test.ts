import { phoneNumberNode, type HealthEntity } from '../../tools/meta-sim/server';
import { eventually, startStack, uniqueDigits, type Stack } from '../support/stack';

/**
 * The gate probe judges the number by its own `PHONE_NUMBER` health entity (issue #22 item 4), on
 * the real stack: Meta's `health_status.can_send_message` is the worst of the number's, WABA's,
 * business's and app's entities, and an app calling (SIP) error makes it `BLOCKED` while messages
 * still go. A reconnection whose webhook was lost must still be found by the probe.
 */

const PROBE_MS = 3_000;

describe('gate probe: the number entity, not the aggregate', () => {
  let stack: Stack;

  beforeAll(async () => {
    stack = await startStack({
      env: { ESCALATION_LEVELS: '10m,60m,24h', GATE_PROBE_INTERVAL: `${PROBE_MS / 1000}s`, GATE_PROBE_GRACE: '4s' },
    });
    stack.sim.setWebhookTarget({ targetUrl: stack.webhookUrl, appSecret: stack.appSecret });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  const state = async (wabaId: string) => (await stack.rt.c.wabas.findOne({ _id: wabaId }))?.state;

  it('a lost ACCOUNT_RECONNECTED with health_status BLOCKED only by an app calling error (138024): the probe reopens the gate and the queued message is sent', async () => {
    const wabaId = uniqueDigits();
    const phone = uniqueDigits('2');
    await stack.register(phone, wabaId, { coexistence: true });
    stack.sim.setNumber(phone, { wabaId, appCallingErrors: [138024] });

    expect((await stack.sim.lifecycle(phone, 'ACCOUNT_OFFBOARDED')).status).toBe(200);
    await eventually(async () => (await state(wabaId)) === 'offboarded');
    const sent = await stack.send({ phoneNumberId: phone, to: '15550001111', type: 'text', text: { body: 'queued' } });
    expect(sent.status).toBe(202);
    const id = sent.json.id as string;
    await eventually(async () => (await stack.rt.c.queue.countDocuments({ wabaId })) === 1);

    // Meta reconnects the number and the webhook is lost. Its node now says: aggregate BLOCKED
    // (the app's calling error), the number itself AVAILABLE, CONNECTED, on the Cloud API.
    await stack.sim.lifecycle(phone, 'ACCOUNT_RECONNECTED', { dropWebhook: true });
    const node = phoneNumberNode(phone, stack.sim.numberConfig(phone), ['status', 'health_status']) as {
      status: string;
      health_status: { can_send_message: string; entities: HealthEntity[] };
    };
    expect(node.status).toBe('CONNECTED');
    expect(node.health_status.can_send_message).toBe('BLOCKED');
    expect(node.health_status.entities.find((e) => e.entity_type === 'PHONE_NUMBER')?.can_send_message).toBe(
      'AVAILABLE',
    );

    // The probe reopens the gate (within a probe interval or two, plus the drain) and the message goes.
    await eventually(async () => (await state(wabaId)) === 'connected', 2 * PROBE_MS + 8_000);
    await eventually(async () => (await stack.message(id))?.status === 'sent');
    expect(stack.sim.log.accepted.filter((m) => m.phoneNumberId === phone)).toHaveLength(1);

    // Operators see why: the number could send, and the app's error was recorded, not held against it.
    const view = await stack.ops('GET', `/v1/wabas/${wabaId}`);
    expect(view.json).toMatchObject({ state: 'connected', lastReopen: { cause: 'reconnected_by_probe' } });
    const detail = (view.json.lastReopen as { detail?: string }).detail ?? '';
    expect(detail).toContain('can_send_message AVAILABLE (overall BLOCKED)');
    expect(detail).toMatch(/not held against it: APP \d+ BLOCKED \(138024\)/);
  });
});
