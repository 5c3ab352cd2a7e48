/**
 * Baseline workflows for the send benchmark (bundled on their own, run on their own task queue):
 * the least a Temporal-based sender must do for one message, so that the send workflow's extra
 * cost (database reads and writes, the gate check, pacing) shows as a ratio.
 *
 * - `bareSendWorkflow`: one activity that makes the same single Cloud API POST to the simulator.
 * - `noopWorkflow`: one activity that does nothing (the Temporal floor).
 *
 * Both use the same activity options as `sendMessageWorkflow`'s `admit` (1 min start-to-close,
 * the same retry policy) and return a `SendOutcome`, like it.
 */
import { condition, defineSignal, proxyActivities, setHandler } from '@temporalio/workflow';
import type { SendOutcome, SendRequest } from '../src/contracts';
import type { BaselineActivities } from './baseline-activities';

const acts = proxyActivities<BaselineActivities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1 second', maximumInterval: '1 minute', backoffCoefficient: 2, maximumAttempts: 8 },
});

export async function bareSendWorkflow(req: SendRequest): Promise<SendOutcome> {
  const { wamid } = await acts.postMessage(req);
  return { messageId: req.messageId, status: 'sent', wamid, at: new Date().toISOString() };
}

export async function noopWorkflow(req: SendRequest): Promise<SendOutcome> {
  await acts.noop(req.messageId);
  return { messageId: req.messageId, status: 'sent', at: new Date().toISOString() };
}

/** The bare lifecycle baseline's signal: one event, as the real workflow's `lifecycleEvent`. */
export const bareEventSignal = defineSignal<[{ key: string }]>('bareEvent');

/**
 * The least a signal-with-start lifecycle workflow does (the baseline of `bench:lifecycle`):
 * started by signal-with-start, it ends once it has received one signal. No activity.
 */
export async function bareLifecycleWorkflow(): Promise<number> {
  let received = 0;
  setHandler(bareEventSignal, () => {
    received++;
  });
  await condition(() => received > 0);
  return received;
}
