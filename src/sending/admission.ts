import type { Logger } from '../logger';
import { isDuplicateKey, type Collections, type MessageDoc } from '../adapters/store/db';
import { enqueue } from '../adapters/store/queue';
import { gateOpen } from '../adapters/store/wabas';
import { deliverLifecycleEvent, type LauncherDeps } from '../lifecycle/launch';
import type { MessageContent, SendOutcome, SendRequest } from '../../workflows/contracts';

/** The message part of a send request. */
export const contentOf = (req: SendRequest): MessageContent =>
  req.type === 'text' ? { type: 'text', text: req.text } : { type: 'template', template: req.template };

/**
 * Records an accepted message (status `accepted`, or `queued` when the caller is about to queue
 * it) unless it is already recorded. Returns the new document, or undefined when the message was
 * already recorded (the caller reads it if it needs it). Idempotent: the API and the send
 * workflow both call it.
 */
export async function recordMessage(
  c: Collections,
  req: SendRequest,
  wabaId: string,
  status: 'accepted' | 'queued' = 'accepted',
): Promise<MessageDoc | undefined> {
  const doc: MessageDoc = {
    _id: req.messageId,
    wabaId,
    phoneNumberId: req.phoneNumberId,
    to: req.to,
    content: contentOf(req),
    status,
    acceptedAt: req.acceptedAt,
    ...(status === 'queued' ? { queuedAt: req.acceptedAt } : {}),
    ...(req.expiresAt ? { expiresAt: req.expiresAt } : {}),
    updatedAt: req.acceptedAt,
    attempts: 0,
  };
  try {
    await c.messages.insertOne(doc);
    return doc;
  } catch (err) {
    if (!isDuplicateKey(err)) throw err;
    return undefined;
  }
}

/**
 * Puts a message at the end of its WABA's durable queue (idempotent per message), then looks at
 * the gate once more: if it reopened between the caller's read and our insert, the drain that
 * reopened it may have missed this entry, so the lifecycle workflow is asked for a stray drain.
 * Used by the send API (so queue order is acceptance order) and by the send workflow's admit.
 */
export async function queueMessage(
  deps: { c: Collections; launcher: LauncherDeps; logger: Logger },
  req: Pick<SendRequest, 'messageId' | 'phoneNumberId' | 'to' | 'expiresAt'>,
  wabaId: string,
  content: MessageContent,
  /** The message document already says `queued` (recorded so): no update needed. */
  recordedAsQueued = false,
): Promise<SendOutcome> {
  const { c } = deps;
  const now = new Date().toISOString();
  const { messageId, phoneNumberId, to, expiresAt } = req;
  // Status first, entry second: an admit retry that finds `queued`, no entry and no settlement
  // knows this step was interrupted and queues again.
  if (!recordedAsQueued) {
    await c.messages.updateOne({ _id: messageId }, { $set: { status: 'queued', queuedAt: now, updatedAt: now } });
  }
  const seq = await enqueue(c, {
    wabaId,
    messageId,
    phoneNumberId,
    to,
    content,
    ...(expiresAt ? { expiresAt } : {}),
    enqueuedAt: now,
    notify: true,
  });
  const after = await c.wabas.findOne({ _id: wabaId }, { projection: { state: 1 } });
  if (gateOpen(after?.state)) {
    await deliverLifecycleEvent(deps.launcher, {
      key: `stray:${messageId}`,
      type: 'QUEUE_STRAY',
      wabaId,
      receivedAt: now,
      source: 'send',
      detail: `message ${messageId} queued while the gate reopened`,
    });
  }
  deps.logger.debug({ wabaId, messageId, seq }, 'message queued');
  return { messageId, status: 'queued', at: now };
}
