import { randomUUID } from 'node:crypto';
import type { Client } from '@temporalio/client';
import { sendWorkflowId, type MessageContent, type SendOutcome, type SendRequest } from '../../workflows/contracts';
import type { sendMessageWorkflow, SendOptions } from '../../workflows/send';
import { startSendWorkflow } from '../lifecycle/launch';

/** What a sender passes: the message, and optionally its own id (reuse it to retry safely). */
export type SendInput = { messageId?: string; phoneNumberId: string; to: string; expiresAt?: string } & MessageContent;

/**
 * The typed helper for senders that hold their own Temporal client: starts the same send
 * workflow the HTTP API starts. Idempotent per `messageId` (a second `send` with the same id does
 * not start a second run). The workflow validates the phone number itself: an unregistered number
 * ends as `failed` with reason `unknown_phone_number`.
 */
export function createSenderClient(deps: { client: Client; taskQueue: string; options?: SendOptions }) {
  return {
    async send(input: SendInput): Promise<{ messageId: string; started: boolean }> {
      const messageId = input.messageId ?? `msg_${randomUUID()}`;
      const req = { ...input, messageId, acceptedAt: new Date().toISOString() } as SendRequest;
      const started = await startSendWorkflow(deps, req, deps.options);
      return { messageId, started };
    },
    /** Waits for the message's final outcome (the send workflow's result). */
    result(messageId: string): Promise<SendOutcome> {
      return deps.client.workflow.getHandle<typeof sendMessageWorkflow>(sendWorkflowId(messageId)).result();
    },
  };
}
