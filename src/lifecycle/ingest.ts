import { classifyMetaError } from '../adapters/graph/errors';
import type { Logger } from '../logger';
import {
  isLifecycleEvent,
  type AccountUpdate,
  type ParsedWebhook,
  type StatusUpdate,
} from '../adapters/meta/webhook-payload';
import type { WebhookSink } from '../http/webhook';
import type { AccountEventDoc, Collections, MessageStatusDoc } from '../adapters/store/db';
import { markAccountEventHandled, recordAccountEvent, recordStatuses } from '../adapters/store/events';
import { deliverLifecycleEvent, type LaunchDeps } from './launch';

/**
 * The real webhook sink: makes every event durable before the webhook is acknowledged.
 *
 * - `account_update`: recorded in `account_events` (`_id` = the event's dedupe key, so a
 *   redelivery is recognised), handed to the WABA's lifecycle workflow when it is a lifecycle
 *   event, then marked handed over. A redelivery of an event already handed over does nothing; one
 *   whose first delivery failed half-way is handed over again (the workflow ignores a key it has
 *   seen). Events of one WABA are handed over in body order; different WABAs in parallel.
 * - `messages` statuses: one insert-only batch into `message_statuses`, never a Temporal call,
 *   except a `failed` status whose error means the account cannot send (re-closes the gate).
 *
 * Throws when MongoDB or Temporal fails, so the webhook answers 5xx and Meta redelivers.
 */
export function createWebhookSink(deps: {
  c: Collections;
  launch: LaunchDeps;
  logger: Logger;
  /** Deadline of one hand-over to Temporal; past it the webhook answers 5xx and Meta redelivers. */
  temporalTimeoutMs?: number;
}): WebhookSink {
  const { c, launch, logger } = deps;
  const timeoutMs = deps.temporalTimeoutMs ?? 4_000;
  // Temporal calls get a deadline: when Temporal is down the webhook must fail fast, not hang.
  const deliver = (event: Parameters<typeof deliverLifecycleEvent>[1]) =>
    deliverLifecycleEvent(launch, event, { deadlineMs: timeoutMs });

  async function handOver(u: AccountUpdate, receivedAt: string): Promise<void> {
    const doc: AccountEventDoc = {
      _id: u.key,
      wabaId: u.wabaId,
      event: u.event,
      ...(u.metaTime !== undefined ? { metaTime: u.metaTime } : {}),
      entryId: u.entryId,
      raw: u.raw,
      receivedAt,
      outcome: 'pending',
    };
    if ((await recordAccountEvent(c, doc)) === 'done') {
      logger.info({ wabaId: u.wabaId, event: u.event, key: u.key }, 'duplicate account_update ignored');
      return;
    }
    const event = u.event;
    const lifecycle = isLifecycleEvent(event);
    if (lifecycle) {
      await deliver({
        key: u.key,
        type: event,
        wabaId: u.wabaId,
        ...(u.metaTime !== undefined ? { metaTime: u.metaTime } : {}),
        receivedAt,
        source: 'webhook',
        ...(u.detail ? { detail: u.detail } : {}),
      });
    }
    await markAccountEventHandled(c, u.key, lifecycle ? 'signalled' : 'recorded', new Date().toISOString());
    logger.info(
      { wabaId: u.wabaId, event: u.event, metaTime: u.metaTime },
      lifecycle ? 'account_update handed to the lifecycle workflow' : 'account_update recorded',
    );
  }

  async function storeStatuses(statuses: StatusUpdate[], receivedAt: string): Promise<void> {
    const docs: MessageStatusDoc[] = statuses.map((s) => ({
      _id: `${s.wamid}:${s.status}`,
      wamid: s.wamid,
      status: s.status,
      timestamp: s.timestamp,
      recipientId: s.recipientId,
      wabaId: s.wabaId,
      phoneNumberId: s.phoneNumberId,
      ...(s.errors ? { errors: s.errors } : {}),
      receivedAt,
    }));
    // Redelivered statuses collide on `_id`: that is the dedupe.
    await recordStatuses(c, docs);
    for (const s of statuses) {
      if (s.status !== 'failed') continue;
      const unusable = s.errors?.find((e) => classifyMetaError({ code: e.code }).class === 'account_unusable');
      if (!unusable) continue;
      logger.warn(
        { wabaId: s.wabaId, wamid: s.wamid, code: unusable.code },
        'failed status says the account cannot send',
      );
      await deliver({
        key: `status:${s.wamid}:failed`,
        type: 'SEND_ACCOUNT_UNUSABLE',
        wabaId: s.wabaId,
        receivedAt,
        source: 'status',
        detail: `status webhook: message ${s.wamid} failed with Meta code ${unusable.code}${unusable.title ? ` (${unusable.title})` : ''}`,
      });
    }
  }

  return {
    async accept(parsed: ParsedWebhook): Promise<void> {
      const receivedAt = new Date().toISOString();
      const byWaba = new Map<string, AccountUpdate[]>();
      for (const u of parsed.accountUpdates) byWaba.set(u.wabaId, [...(byWaba.get(u.wabaId) ?? []), u]);
      await Promise.all([
        ...[...byWaba.values()].map(async (updates) => {
          for (const u of updates) await handOver(u, receivedAt);
        }),
        parsed.statuses.length > 0 ? storeStatuses(parsed.statuses, receivedAt) : Promise.resolve(),
      ]);
    },
  };
}
