import { classifyMetaError } from '../adapters/graph/errors';
import type { Logger } from '../logger';
import { isLifecycleEvent, type AccountUpdate, type ParsedWebhook, type StatusUpdate } from '../adapters/meta/webhook-payload';
import type { WebhookSink } from '../http/webhook';
import {
  isDuplicateKey,
  isOnlyDuplicateKeys,
  type AccountEventDoc,
  type Collections,
  type MessageStatusDoc,
} from '../adapters/store/db';
import { deliverLifecycleEvent, type LauncherDeps } from './launch';

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
  launcher: LauncherDeps;
  logger: Logger;
  /** Deadline of one hand-over to Temporal; past it the webhook answers 5xx and Meta redelivers. */
  temporalTimeoutMs?: number;
}): WebhookSink {
  const { c, launcher, logger } = deps;
  const timeoutMs = deps.temporalTimeoutMs ?? 4_000;
  // Temporal calls get a deadline: when Temporal is down the webhook must fail fast, not hang.
  const deliver = (event: Parameters<typeof deliverLifecycleEvent>[1]) =>
    launcher.client.withDeadline(Date.now() + timeoutMs, () => deliverLifecycleEvent(launcher, event));

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
    try {
      await c.accountEvents.insertOne(doc);
    } catch (err) {
      if (!isDuplicateKey(err)) throw err;
      const first = await c.accountEvents.findOne({ _id: u.key }, { projection: { outcome: 1 } });
      if (first && first.outcome !== 'pending') {
        logger.info({ wabaId: u.wabaId, event: u.event, key: u.key }, 'duplicate account_update ignored');
        return;
      }
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
    await c.accountEvents.updateOne(
      { _id: u.key },
      { $set: { outcome: lifecycle ? 'signalled' : 'recorded', handedOverAt: new Date().toISOString() } },
    );
    logger.info(
      { wabaId: u.wabaId, event: u.event, metaTime: u.metaTime },
      lifecycle ? 'account_update handed to the lifecycle workflow' : 'account_update recorded',
    );
  }

  async function recordStatuses(statuses: StatusUpdate[], receivedAt: string): Promise<void> {
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
    try {
      await c.messageStatuses.insertMany(docs, { ordered: false });
    } catch (err) {
      // Redelivered statuses collide on `_id`: that is the dedupe. Anything else is a real failure.
      if (!isOnlyDuplicateKeys(err)) throw err;
    }
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
        parsed.statuses.length > 0 ? recordStatuses(parsed.statuses, receivedAt) : Promise.resolve(),
      ]);
    },
  };
}
