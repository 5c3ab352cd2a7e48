import { randomUUID } from 'node:crypto';
import { WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError } from '@temporalio/client';
import {
  WabaIdKey,
  credentialsWorkflowId,
  messageSettledSignal,
  sendWorkflowId,
  tokenRefusedSignal,
  type CredentialsWorkflow,
  type SendMessageWorkflow,
  type SendOptions,
  type TokenRefusal,
  type MessageContent,
  type SendOutcome,
  type SendRequest,
  type TemplateBody,
} from '../contracts';
import type { LaunchDeps } from '../launch-deps';

/**
 * The send launcher: the one door into send workflows (start, settle signal, result) and into the
 * credentials workflow of a refused token. It owns their ids and start options. Workflow code is
 * referenced by type only.
 */

type SendWorkflow = SendMessageWorkflow;
const SEND_WORKFLOW = 'sendMessageWorkflow';

/**
 * Starts the send workflow of one message. Starting the same message twice is a no-op (the
 * existing run keeps going): returns false then, true when this call started it.
 */
export async function startSendWorkflow(
  deps: Pick<LaunchDeps, 'client' | 'taskQueue'>,
  req: SendRequest,
  options: SendOptions = {},
  wabaId?: string,
): Promise<boolean> {
  try {
    await deps.client.workflow.start<SendWorkflow>(SEND_WORKFLOW, {
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

/**
 * Tells a waiting send workflow its message's outcome. A workflow that is not running is no error:
 * it has not started yet (its start reads the recorded outcome) or it has ended. Rejects when
 * Temporal refuses or cannot be reached (the caller retries: the workflow keeps no timer of its own).
 */
export async function notifySettled(deps: Pick<LaunchDeps, 'client'>, outcome: SendOutcome): Promise<void> {
  try {
    await deps.client.workflow.getHandle(sendWorkflowId(outcome.messageId)).signal(messageSettledSignal, outcome);
  } catch (err) {
    if (!(err instanceof WorkflowNotFoundError)) throw err;
  }
}

/**
 * What a sender passes: the message, the customer by phone number (`to`) or business-scoped user id
 * (`recipient`), and optionally its own id (reuse it to retry safely) and a `fallbackTemplate` sent
 * instead of a free-form message when the customer service window is closed.
 */
export type SendInput = {
  messageId?: string;
  phoneNumberId: string;
  expiresAt?: string;
  fallbackTemplate?: TemplateBody;
} & ({ to: string; recipient?: string } | { to?: undefined; recipient: string }) &
  MessageContent;

/**
 * The typed helper for senders that hold their own Temporal client: starts the same send
 * workflow the HTTP API starts. Idempotent per `messageId` (a second `send` with the same id does
 * not start a second run). The workflow validates the phone number itself: an unregistered number
 * ends as `failed` with reason `unknown_phone_number`.
 */
export function createSenderClient(deps: Pick<LaunchDeps, 'client' | 'taskQueue'> & { options?: SendOptions }) {
  return {
    async send(input: SendInput): Promise<{ messageId: string; started: boolean }> {
      const messageId = input.messageId ?? `msg_${randomUUID()}`;
      // `to` wins over a `recipient` BSUID, as at Meta (the HTTP API also maps a BSUID to a known number).
      const { recipient, to, ...rest } = input;
      const req = { ...rest, to: to ?? recipient, messageId, acceptedAt: new Date().toISOString() } as SendRequest;
      const started = await startSendWorkflow(deps, req, deps.options);
      return { messageId, started };
    },
    /** Waits for the message's final outcome (the send workflow's result). */
    result(messageId: string): Promise<SendOutcome> {
      return deps.client.workflow.getHandle<SendWorkflow>(sendWorkflowId(messageId)).result();
    },
  };
}

/**
 * Tells the token's credentials workflow of a refusal (signal-with-start: one run per token at a
 * time; a refusal after a run lifted its pause starts the next one).
 */
export async function reportTokenRefusal(
  deps: Pick<LaunchDeps, 'client' | 'taskQueue'>,
  refusal: TokenRefusal,
): Promise<void> {
  await deps.client.workflow.signalWithStart<CredentialsWorkflow, [TokenRefusal]>('credentialsWorkflow', {
    workflowId: credentialsWorkflowId(deps.taskQueue, refusal.source),
    taskQueue: deps.taskQueue,
    args: [refusal],
    signal: tokenRefusedSignal,
    signalArgs: [refusal],
    staticSummary: `Sending paused: Meta refuses the token from ${refusal.source}`,
  });
}
