import type { SendRequest } from '../../src/contracts';
import { createAdmission } from '../../src/sending/admission';
import { beginSend, endSend } from '../../src/sending/ledger';
import { createSenderClient } from '../../src/sending/launch';
import { createSendActivities, type SendDeps } from '../../src/sending/send.activities';
import { statusFor, statusPayload } from '../../tools/meta-sim/payloads';
import { eventually, startStack, uniqueDigits, type Stack } from '../support/stack';

/**
 * Sends whose answer was lost (the Cloud API accepted them, our client timed out): they show
 * `in_doubt`, a status webhook tagged with the message id settles them as sent without a second
 * POST, and without one the default policy (`resend_after`) sends once more after the grace period.
 */
describe('in-doubt sends on the real stack', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ env: { GRAPH_API_TIMEOUT_MS: '400', IN_DOUBT_GRACE_MS: '3000' } });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  async function slowNumber(): Promise<{ wabaId: string; phone: string }> {
    const wabaId = uniqueDigits();
    const phone = uniqueDigits('4');
    await stack.register(phone, wabaId);
    stack.sim.setNumber(phone, { latencyMs: 1_000 }); // accepted at once, answered after our timeout
    return { wabaId, phone };
  }
  const accepted = (phone: string) => stack.sim.log.accepted.filter((m) => m.phoneNumberId === phone);
  const sendText = async (phone: string, body: string) =>
    (await stack.send({ phoneNumberId: phone, to: '15556660000', type: 'text', text: { body } })).json.id as string;

  it('tags the send with the message id; a status webhook naming it settles it as sent, never POSTed twice', async () => {
    const { wabaId, phone } = await slowNumber();
    const id = await sendText(phone, 'lost answer');
    await eventually(async () => (await stack.message(id))?.status === 'in_doubt', 20_000, 50);
    const [first] = accepted(phone);
    expect(first?.clientId).toBe(id); // biz_opaque_callback_data = message id
    expect(await stack.webhook(statusPayload(wabaId, phone, [statusFor(first!, 'sent')]))).toBe(200);
    await eventually(async () => (await stack.message(id))?.status === 'sent', 20_000, 100);
    expect((await stack.message(id))?.wamid).toBe(first!.wamid);
    expect(accepted(phone)).toHaveLength(1);
    expect(stack.sim.receiverStats(phone).duplicates).toBe(0);
  }, 30_000);

  it('a direct send whose last attempt lost its answer is not failed retries_exhausted: the ledger decides, and a status settles it as sent', async () => {
    const { wabaId, phone } = await slowNumber();
    // One attempt: the POST whose answer is lost is the send's last.
    const sender = createSenderClient({
      client: stack.rt.temporal,
      taskQueue: stack.config.temporal.taskQueue,
      options: { maxAttempts: 1 },
    });
    const { messageId } = await sender.send({
      phoneNumberId: phone,
      to: '15556660000',
      type: 'text',
      text: { body: 'last attempt lost' },
    });
    await eventually(async () => accepted(phone).length === 1, 20_000, 50);
    const [first] = accepted(phone);
    await eventually(async () => (await stack.message(messageId))?.status === 'in_doubt', 20_000, 50);
    // Its one attempt is spent. Before, the send workflow failed it `retries_exhausted` within a
    // few hundred ms, though Meta had accepted it; now it waits for a status through the grace
    // period (3 s here), so half of that later it is still in doubt.
    await new Promise((r) => setTimeout(r, 1_500));
    expect((await stack.message(messageId))?.status).toBe('in_doubt');
    expect(await stack.webhook(statusPayload(wabaId, phone, [statusFor(first!, 'sent')]))).toBe(200);
    await expect(sender.result(messageId)).resolves.toMatchObject({ status: 'sent', wamid: first!.wamid });
    expect(accepted(phone)).toHaveLength(1);
  }, 30_000);

  it('a send the workflow gives up on fails in_doubt when its last POST has no recorded answer, retries_exhausted when it was refused', async () => {
    const { wabaId, phone } = await slowNumber();
    const admission = createAdmission({
      c: stack.rt.c,
      launch: stack.rt.launch,
      logger: stack.logger,
      graph: stack.config.graph,
    });
    const acts = createSendActivities({ c: stack.rt.c, admission } as unknown as SendDeps);
    const policy = { policy: 'resend_after' as const, graceMs: 3_000 };
    const recorded = async (body: string): Promise<string> => {
      const req: SendRequest = {
        messageId: `msg_give_up_${uniqueDigits()}`,
        phoneNumberId: phone,
        to: '15556660000',
        acceptedAt: new Date().toISOString(),
        type: 'text',
        text: { body },
      };
      expect(await admission.acceptNew(req, wabaId, { kind: 'send' })).toBe(true);
      expect(await beginSend(stack.rt.c, req.messageId, policy)).toEqual({ kind: 'send', resend: false });
      return req.messageId;
    };
    const giveUp = (messageId: string) =>
      acts.settleDirect({ messageId, status: 'failed', reason: 'retries_exhausted', at: new Date().toISOString() });

    // The POST went out and nothing came back (no answer recorded): it may have been delivered.
    const lost = await recorded('answer never recorded');
    await expect(giveUp(lost)).resolves.toMatchObject({ status: 'failed', reason: 'in_doubt' });
    // Meta refused the last POST (its answer recorded): it did not go, as the reason says.
    const refused = await recorded('refused');
    await endSend(stack.rt.c, refused, { refused: true });
    await expect(giveUp(refused)).resolves.toMatchObject({ status: 'failed', reason: 'retries_exhausted' });
  });

  it('without a status, resend_after sends it once more after the grace period', async () => {
    const { phone } = await slowNumber();
    const id = await sendText(phone, 'no status');
    await eventually(async () => (await stack.message(id))?.status === 'in_doubt', 20_000, 50);
    stack.sim.setNumber(phone, { latencyMs: 0 });
    await eventually(async () => (await stack.message(id))?.status === 'sent', 30_000, 200);
    expect(accepted(phone)).toHaveLength(2); // at-least-once: the one resend the policy allows
  }, 40_000);
});
