import { sendWorkflowId, type SendOutcome } from '../../src/contracts';
import { startStack, uniqueDigits, type Stack } from './stack';

/**
 * Helpers for tests of customers' messages to the business (service window, BSUIDs): a stack
 * whose simulator delivers its webhooks (inbound messages) to the service.
 */

/** The real stack, with the simulator's `inbound()` webhooks going to the service. */
export async function startInboundStack(): Promise<Stack> {
  const stack = await startStack();
  stack.sim.setWebhookTarget({ targetUrl: stack.webhookUrl, appSecret: stack.appSecret });
  return stack;
}

/** A fresh WABA and coexistence number, registered with the service and known to the simulator. */
export async function registerNumber(stack: Stack): Promise<{ wabaId: string; phone: string }> {
  const wabaId = uniqueDigits();
  const phone = uniqueDigits('3');
  await stack.register(phone, wabaId, { coexistence: true });
  stack.sim.setNumber(phone, { wabaId });
  return { wabaId, phone };
}

/** `POST /v1/messages`, expecting 202; the message id. */
export async function sendAccepted(stack: Stack, body: Record<string, unknown>): Promise<string> {
  const r = await stack.send(body);
  if (r.status !== 202) throw new Error(`send answered ${r.status}: ${JSON.stringify(r.json)}`);
  return r.json.id as string;
}

/** The send workflow's result: the message's final outcome. */
export const finalOutcome = (stack: Stack, id: string): Promise<SendOutcome> =>
  stack.rt.temporal.workflow.getHandle(sendWorkflowId(id)).result();
