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
import { proxyActivities } from '@temporalio/workflow';
import type { SendOutcome, SendRequest } from '../workflows/contracts';
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
