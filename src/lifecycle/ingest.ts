import { randomBytes } from 'node:crypto';
import type { OutboxNotifier } from './outbox.store';
import { classifyMetaError } from '../adapters/graph/errors';
import type { Logger } from '../logger';
import { parseWebhookBody, type ParsedWebhook } from '../adapters/meta/webhook-payload';
import { isLifecycleEvent, type LifecycleWebhookEvent } from '../contracts';
import type { DeliveryBytes, SinkReport, WebhookSink } from '../http/webhook';
import type {
  AccountEventDoc,
  Collections,
  GateHoldDoc,
  MessageStatusDoc,
  OutboxDoc,
  OutboxEvent,
} from '../adapters/store/db';
import { recordStatuses } from '../sending/statuses.store';
import { insertForwards, pendingEntries } from '../relay/forwards.store';
import { nextOutboxId, recordDelivery } from './outbox.store';
import { holdGates } from './gate-holds.store';
import { HOLDING_EVENTS } from '../contracts';
import { wants, type ForwardTarget } from '../relay/targets';
import { confirmFromStatuses } from '../sending/ledger';
import { recordInbound } from '../sending/window';
import { recordCustomerIds } from '../sending/windows.store';

/**
 * The webhook sink: what is written before the 200.
 *
 * `POST /webhooks/meta` verifies the signature over the raw bytes, parses, and hands the delivery
 * to the sink, which writes its documents' batches in parallel and then answers 200 without
 * waiting for Temporal: one `outbox` insert per delivery that carries `account_update` events (the
 * lifecycle events in body order and the raw body as base64; the events that need no hand-over,
 * informational `recorded` and unusable `refused`, are only counted: the relay derives their
 * `account_events` documents from the raw body with the same function, `accountUpdateRecords`, so
 * a 3,000-entry batch is stored once and FerretDB's per-write cost, which grows with the document,
 * stays half), one `forwards` entry per forward target that wants the delivery (its own copy of
 * the bytes and Meta's `X-Hub-Signature-256`, so #12 forwards them byte for byte without the
 * outbox), the statuses' `insertMany`, and for `ACCOUNT_OFFBOARDED` / `PARTNER_REMOVED` one
 * upsert of the WABA's gate hold (below). A failed store write answers 503 (Meta redelivers;
 * recording twice is harmless).
 */

/** WABA ids that can name a lifecycle workflow (Meta's are digits). A lifecycle event for any
 *  other id (NUL bytes, lone surrogates, kilobytes of text) is recorded as `refused`, never handed
 *  over: Temporal would refuse it on every redelivery. */
export const WORKFLOW_SAFE_ID = /^[\w.-]{1,128}$/;

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
 * A delivery's `account_update` changes, sorted: lifecycle events with a WABA id that can name a
 * workflow become outbox events (handed over by the relay); the rest are audited in
 * `account_events` (`recorded`, or `refused` for a lifecycle event whose WABA id cannot name a
 * workflow, counted in `unusable`). The one rule for the sink at the ack and for the relay when it
 * audits from the stored raw body (`auditOfDelivery`): the same input gives the same documents, so
 * the audit is stored once. `withAudit: false` (the sink, when it stores the body) only counts the
 * audited changes and names the first refused one, so the ack does not build documents the relay
 * builds again.
 */
export function accountUpdateRecords(
  parsed: ParsedWebhook,
  receivedAt: string,
  deliveryId: string,
  withAudit = true,
): {
  events: OutboxEvent[];
  audit: AccountEventDoc[];
  auditCount: number;
  unusable: number;
  firstRefused?: { wabaId: string; key: string };
} {
  const events: OutboxEvent[] = [];
  const audit: AccountEventDoc[] = [];
  let auditCount = 0;
  let unusable = 0;
  let firstRefused: { wabaId: string; key: string } | undefined;
  for (const u of parsed.accountUpdates) {
    const lifecycle = isLifecycleEvent(u.event);
    if (lifecycle && WORKFLOW_SAFE_ID.test(u.wabaId)) {
      events.push({
        key: u.key,
        type: u.event as LifecycleWebhookEvent,
        wabaId: u.wabaId,
        ...(u.metaTime !== undefined ? { metaTime: u.metaTime } : {}),
        receivedAt,
        source: 'webhook',
        ...(u.detail ? { detail: u.detail } : {}),
        ...(u.disconnectionInfo ? { disconnectionInfo: u.disconnectionInfo } : {}),
        entryId: u.entryId,
        raw: jsonText(u.raw),
      });
      continue;
    }
    auditCount++;
    if (lifecycle) {
      unusable++;
      firstRefused ??= { wabaId: u.wabaId, key: u.key };
    }
    if (!withAudit) continue;
    audit.push({
      _id: u.key,
      wabaId: u.wabaId,
      event: u.event,
      ...(u.metaTime !== undefined ? { metaTime: u.metaTime } : {}),
      entryId: u.entryId,
      raw: jsonText(u.raw),
      receivedAt,
      outcome: lifecycle ? 'refused' : 'recorded',
      deliveryId,
    });
  }
  return { events, audit, auditCount, unusable, ...(firstRefused ? { firstRefused } : {}) };
}

/**
 * The audit documents of a recorded delivery: the ones stored with it when it has no raw body,
 * else derived from its raw body as the sink sorted it.
 */
export function auditOfDelivery(doc: Pick<OutboxDoc, '_id' | 'raw' | 'audit' | 'receivedAt'>): AccountEventDoc[] {
  if (!doc.raw) return JSON.parse(doc.audit || '[]') as AccountEventDoc[];
  const parsed = parseWebhookBody(JSON.parse(Buffer.from(doc.raw, 'base64').toString('utf8')));
  return accountUpdateRecords(parsed, doc.receivedAt, doc._id).audit;
}

export type { OutboxNotifier };

/**
 * The real webhook sink: makes every event durable before the webhook is acknowledged, and does
 * not wait for Temporal. Per delivery, at most these writes, in parallel:
 *
 * - one `outbox` insert holding the delivery's lifecycle events (in body order), the events that
 *   need no hand-over (informational `account_update`s, `recorded`; lifecycle events whose WABA id
 *   cannot name a workflow, `refused` and reported as `SinkReport.unusable`) and the raw body
 *   (base64), when it has any of those. The outbox relay (src/lifecycle/outbox-relay.ts) hands the
 *   lifecycle events to their workflows afterwards, per WABA in order, audits each in
 *   `account_events` once handed over (a redelivered event whose key is audited is never handed
 *   over again), then audits the rest (redeliveries collide on `_id`);
 * - one insert of the delivery's `forwards` entries, one per target that wants it, each with the
 *   raw body and Meta's signature (src/relay/forwarder.ts sends them; a status or message webhook
 *   costs forwarding this insert, the `forwarded` row and the entry's delete);
 * - for `ACCOUNT_OFFBOARDED` and `PARTNER_REMOVED`, one upsert per WABA of its gate hold
 *   (`gate_holds`, replacing a hold received earlier for an event Meta sent no later): the gate
 *   is closed from the ack on, whatever the relay's backlog, until the WABA's workflow has
 *   handled the event;
 * - one insert-only batch of `messages` statuses into `message_statuses`; a `failed` status whose
 *   error means the account cannot send becomes a `SEND_ACCOUNT_UNUSABLE` outbox event;
 * - per customer and number of its inbound `messages[]`, one `$max` update of the customer's
 *   service window (two writes for a customer never seen before; src/sending/window.ts);
 * - one grouped insert of the BSUID → phone pairs its contacts name (`customer_ids`), when any.
 *
 * The change's value is stored as JSON text, so no content Meta sends can make a record
 * unstorable. Throws when MongoDB fails, so the webhook answers 5xx and Meta redelivers (a delivery
 * recorded twice is harmless: the relay hands each event key over once).
 */
export function createWebhookSink(deps: {
  c: Collections;
  logger: Logger;
  /** The relay of this process; without one the delivery waits for a relay's sweep. */
  outbox?: OutboxNotifier;
  /** Forward targets (FORWARD_TARGETS): every delivery one of them wants gets a `forwards` entry for it. */
  forward?: readonly ForwardTarget[];
  /** Deliveries whose writes may be unsettled at once, counting those already answered 503 after
   *  the webhook's deadline whose writes still run; past it a delivery is refused at once (503,
   *  Meta redelivers), so a slow store cannot pile up work and memory. Default 64. */
  maxUnsettled?: number;
}): WebhookSink {
  const { c, logger } = deps;
  const maxUnsettled = deps.maxUnsettled ?? 64;
  let unsettled = 0;
  const targets = deps.forward ?? [];

  return {
    async accept(parsed: ParsedWebhook, delivery?: DeliveryBytes): Promise<SinkReport> {
      const now = Date.now();
      const receivedAt = new Date(now).toISOString();
      const deliveryId = nextOutboxId(now, randomBytes(6).toString('hex'));
      // With the raw body stored, the relay builds the audit documents from it (not here, at the ack).
      const { events, audit, auditCount, unusable, firstRefused } = accountUpdateRecords(
        parsed,
        receivedAt,
        deliveryId,
        !delivery,
      );
      if (unusable > 0) {
        logger.warn(
          { refused: unusable, firstWabaId: firstRefused?.wabaId.slice(0, 64), firstKey: firstRefused?.key },
          'account_update refused: its WABA id cannot name a workflow',
        );
      }
      const statuses: MessageStatusDoc[] = parsed.statuses.map((s) => ({
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
      for (const s of parsed.statuses) {
        if (s.status !== 'failed') continue;
        const bad = s.errors?.find((e) => classifyMetaError({ code: e.code }).class === 'account_unusable');
        if (!bad || !WORKFLOW_SAFE_ID.test(s.wabaId)) continue;
        logger.warn({ wabaId: s.wabaId, wamid: s.wamid, code: bad.code }, 'failed status says the account cannot send');
        events.push({
          key: `status:${s.wamid}:failed`,
          type: 'SEND_ACCOUNT_UNUSABLE',
          wabaId: s.wabaId,
          receivedAt,
          source: 'status',
          // The failure's own time: older than the last reconnection means stale (a late redelivery).
          causeTime: s.timestamp * 1000,
          code: bad.code,
          errorReason: classifyMetaError({ code: bad.code }).reason,
          wamid: s.wamid,
          // Our send's key: the workflow queues that message again, once (a late failure).
          ...(s.bizOpaqueCallbackData ? { sendKey: s.bizOpaqueCallbackData } : {}),
          detail: `status webhook: message ${s.wamid} failed with Meta code ${bad.code}${bad.title ? ` (${bad.title})` : ''}`,
          entryId: s.wamid,
          raw: '',
        });
      }
      const fields = Object.keys(parsed.changesByField);
      const forward = targets.filter((t) => wants(t, { fields, wabaIds: parsed.entryIds })).map((t) => t.name);
      const raw = delivery ? delivery.raw.toString('base64') : '';
      const signature = delivery?.signature;
      // Only what the lifecycle relay has work for goes to the outbox; forwarding has its own entries.
      const doc: OutboxDoc | undefined =
        events.length > 0 || auditCount > 0
          ? {
              _id: deliveryId,
              kind: 'meta_delivery',
              receivedAt,
              raw,
              ...(signature ? { signature } : {}),
              events,
              // The relay derives the audit from the raw body; kept here only without one.
              ...(delivery ? {} : { audit: JSON.stringify(audit) }),
              auditCount,
              wabaIds: [...new Set(events.map((e) => e.wabaId))],
            }
          : undefined;
      const forwards = pendingEntries(
        { _id: deliveryId, receivedAt, kind: 'meta_delivery', raw, ...(signature ? { signature } : {}), fields },
        forward,
        parsed.entryIds,
      );
      // Closures Meta announced hold their WABA's gate from the ack on (see `gate_holds`): the
      // WABA's last one in the delivery, which the workflow handles after the others.
      const holds = new Map<string, GateHoldDoc>();
      for (const e of events) {
        if (HOLDING_EVENTS.has(e.type))
          holds.set(e.wabaId, {
            _id: e.wabaId,
            eventKey: e.key,
            type: e.type,
            receivedAt,
            ...(e.metaTime !== undefined ? { metaTime: e.metaTime } : {}),
          });
      }
      if (unsettled >= maxUnsettled) throw new Error(`store backlog: ${unsettled} deliveries still being written`);
      unsettled++;
      try {
        await allOrFirstError([
          doc ? recordDelivery(c, doc) : Promise.resolve(),
          insertForwards(c, forwards),
          holdGates(c, [...holds.values()]),
          statuses.length > 0
            ? // then settles in-doubt sends the statuses name (biz_opaque_callback_data)
              recordStatuses(c, statuses).then(() => confirmFromStatuses(c, parsed.statuses))
            : Promise.resolve(),
          recordInbound(c, parsed.inbound),
          recordCustomerIds(
            c,
            parsed.identities.map((i) => ({ _id: i.bsuid, phone: i.phone })),
          ),
        ]);
      } finally {
        unsettled--;
      }
      if (doc) {
        deps.outbox?.notify(doc);
        logger.info(
          { deliveryId: doc._id, events: events.length, wabas: doc.wabaIds.length },
          'delivery recorded in the outbox',
        );
      }
      return { unusable };
    },
  };
}
