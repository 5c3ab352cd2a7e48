import { WorkflowExecutionAlreadyStartedError, type Client } from '@temporalio/client';
import {
  WabaIdKey,
  lifecycleEventSignal,
  sendWorkflowId,
  wabaWorkflowId,
  type LifecycleEvent,
  type LifecycleSettings,
  type SendRequest,
} from '../../workflows/contracts';
import { wabaLifecycleWorkflow } from '../../workflows/lifecycle/workflow';
import { sendMessageWorkflow, type SendOptions } from '../../workflows/send';

/**
 * Launchers: the only doors from HTTP handlers and activities into Temporal. They set workflow
 * ids, search attributes and summaries in one place.
 */

export interface LauncherDeps {
  client: Client;
  taskQueue: string;
  lifecycle: LifecycleSettings;
}

/**
 * Hands a lifecycle event to the WABA's workflow: signals the open run, or starts a new one
 * (signal-with-start). Idempotent in effect: the workflow ignores a key it has seen. Resolves only
 * once Temporal has durably recorded the signal; throws when Temporal is unreachable.
 */
export async function deliverLifecycleEvent(deps: LauncherDeps, event: LifecycleEvent): Promise<void> {
  await deps.client.workflow.signalWithStart(wabaLifecycleWorkflow, {
    workflowId: wabaWorkflowId(event.wabaId),
    taskQueue: deps.taskQueue,
    args: [{ wabaId: event.wabaId, settings: deps.lifecycle }],
    signal: lifecycleEventSignal,
    signalArgs: [event],
    typedSearchAttributes: [{ key: WabaIdKey, value: event.wabaId }],
    staticSummary: `WABA ${event.wabaId} lifecycle (started by ${event.type})`,
  });
}

/**
 * Starts the send workflow of one message. Starting the same message twice is a no-op (the
 * existing run keeps going): returns false then, true when this call started it.
 */
export async function startSendWorkflow(
  deps: Pick<LauncherDeps, 'client' | 'taskQueue'>,
  req: SendRequest,
  options: SendOptions = {},
  wabaId?: string,
): Promise<boolean> {
  try {
    await deps.client.workflow.start(sendMessageWorkflow, {
      workflowId: sendWorkflowId(req.messageId),
      taskQueue: deps.taskQueue,
      args: [req, options],
      // The WABA, when the caller already looked it up, lets Temporal UI list a WABA's sends.
      typedSearchAttributes: wabaId ? [{ key: WabaIdKey, value: wabaId }] : [],
      staticSummary: `${req.type} to ${req.to} via ${req.phoneNumberId}`,
    });
    return true;
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) return false;
    throw err;
  }
}
