import { classifyMetaError } from '../adapters/graph/errors';
import type { Logger } from '../logger';
import {
  isLifecycleEvent,
  type AccountUpdate,
  type ParsedWebhook,
  type StatusUpdate,
} from '../adapters/meta/webhook-payload';
import type { SinkReport, WebhookSink } from '../http/webhook';
import type { AccountEventDoc, Collections, MessageStatusDoc } from '../adapters/store/db';
import { markAccountEventHandled, recordAccountEvent, recordStatuses } from '../adapters/store/events';
import { confirmFromStatuses } from '../sending/ledger';
import { createLimiter } from '../util/limit';
import { deliverLifecycleEvent, type LaunchDeps } from './launch';

/** WABA ids that can name a lifecycle workflow (Meta's are digits). A lifecycle event for any
 *  other id (NUL bytes, lone surrogates, kilobytes of text) is recorded as `refused`, never handed
 *  over: Temporal would refuse it on every redelivery. */
const WORKFLOW_SAFE_ID = /^[\w.-]{1,128}$/;

/** Default bound on the Temporal hand-overs of one delivery in flight at once (one per WABA). */
export const DEFAULT_HANDOVER_CONCURRENCY = 16;

/**
 * JSON text of a value from `JSON.parse`, reading back to the same value: as `JSON.stringify`, but
 * numbers out of double range (`1e400` parses to Infinity) are written `1e999` / `-1e999` instead
 * of `null`. (Digits beyond double precision are already gone after `JSON.parse`.)
 */
export function jsonText(value: unknown): string {
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : value > 0 ? '1e999' : '-1e999';
  if (Array.isArray(value)) return `[${value.map(jsonText).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const parts: string[] = [];
    for (const [k, v] of Object.entries(value)) parts.push(`${JSON.stringify(k)}:${jsonText(v)}`);
    return `{${parts.join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** Settles every promise, then rethrows the first rejection (so nothing keeps running behind a 503). */
async function allOrFirstError(promises: Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(promises);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

/**
 * The real webhook sink: makes every event durable before the webhook is acknowledged.
 *
 * - `account_update`: recorded in `account_events` (`_id` = the event's dedupe key, so a
 *   redelivery is recognised), handed to the WABA's lifecycle workflow when it is a lifecycle
 *   event, then marked handed over. A redelivery of an event already handed over does nothing; one
 *   whose first delivery failed half-way is handed over again (the workflow ignores a key it has
 *   seen). Events of one WABA are handed over in body order; different WABAs in parallel, at most
 *   `handOverConcurrency` at once. The change's value is stored as JSON text, so no content Meta
 *   sends can make the record unstorable; a lifecycle event whose WABA id cannot name a workflow is
 *   recorded as `refused` and reported (`SinkReport.unusable`), never a reason to fail the delivery.
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
  /** Temporal hand-overs (WABAs) of one delivery in flight at once. Default 16. */
  handOverConcurrency?: number;
}): WebhookSink {
  const { c, launch, logger } = deps;
  const handOverConcurrency = deps.handOverConcurrency ?? DEFAULT_HANDOVER_CONCURRENCY;
  const timeoutMs = deps.temporalTimeoutMs ?? 4_000;
  // Temporal calls get a deadline: when Temporal is down the webhook must fail fast, not hang.
  const deliver = (event: Parameters<typeof deliverLifecycleEvent>[1]) =>
    deliverLifecycleEvent(launch, event, { deadlineMs: timeoutMs });

  /** Returns false when the event was recorded but refused (it cannot be applied). */
  async function handOver(u: AccountUpdate, receivedAt: string): Promise<boolean> {
    const doc: AccountEventDoc = {
      _id: u.key,
      wabaId: u.wabaId,
      event: u.event,
      ...(u.metaTime !== undefined ? { metaTime: u.metaTime } : {}),
      entryId: u.entryId,
      raw: jsonText(u.raw),
      receivedAt,
      outcome: 'pending',
    };
    if ((await recordAccountEvent(c, doc)) === 'done') {
      logger.info({ wabaId: u.wabaId, event: u.event, key: u.key }, 'duplicate account_update ignored');
      return true;
    }
    const event = u.event;
    const lifecycle = isLifecycleEvent(event);
    if (lifecycle && !WORKFLOW_SAFE_ID.test(u.wabaId)) {
      await markAccountEventHandled(c, u.key, 'refused', new Date().toISOString());
      logger.warn(
        { wabaId: u.wabaId.slice(0, 64), event, key: u.key },
        'account_update refused: its WABA id cannot name a workflow',
      );
      return false;
    }
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
    return true;
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
    await confirmFromStatuses(c, statuses); // settles in-doubt sends named by biz_opaque_callback_data
    for (const s of statuses) {
      if (s.status !== 'failed') continue;
      const unusable = s.errors?.find((e) => classifyMetaError({ code: e.code }).class === 'account_unusable');
      if (!unusable || !WORKFLOW_SAFE_ID.test(s.wabaId)) continue;
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
    async accept(parsed: ParsedWebhook): Promise<SinkReport> {
      const receivedAt = new Date().toISOString();
      const byWaba = new Map<string, AccountUpdate[]>();
      for (const u of parsed.accountUpdates) {
        const list = byWaba.get(u.wabaId);
        if (list) list.push(u);
        else byWaba.set(u.wabaId, [u]);
      }
      let unusable = 0;
      const limiter = createLimiter(handOverConcurrency);
      await allOrFirstError([
        ...[...byWaba.values()].map((updates) =>
          limiter.run(async () => {
            for (const u of updates) if (!(await handOver(u, receivedAt))) unusable++;
          }),
        ),
        parsed.statuses.length > 0 ? storeStatuses(parsed.statuses, receivedAt) : Promise.resolve(),
      ]);
      return { unusable };
    },
  };
}
