import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { Collections, ForwardDoc } from '../adapters/store/db';
import { insertForwards, pendingEntries } from './forwards.store';
import type { Settlement } from '../sending/queue.store';
import type { WabaSnapshot } from '../lifecycle/wabas.store';
import { sendKey } from '../sending/messages.store';
import { wants, type ForwardTarget } from './targets';

/**
 * Service events: what the service decides, told to the BSP's own systems through the same forward
 * entries and forwarders as Meta's deliveries (Standard Webhooks-signed; no Meta signature). Each event
 * has a stable `id` (the same on a retry), so receivers dedupe by it (it is also `webhook-id`).
 * The catalog below is the one definition: its JSON Schemas are served at `GET /v1/events/catalog`
 * and committed as `events.schema.json`.
 */

/** The change field a forward target names to receive service events (`fields` filter). */
export const SERVICE_EVENTS_FIELD = 'coexist_relay';

const base = {
  id: z.string().describe('Stable per event: dedupe by it (also sent as webhook-id)'),
  at: z.iso.datetime().describe('When the service decided it'),
  wabaId: z.string(),
};

export const serviceEventSchemas = {
  'waba.gate_closed': z.object({
    ...base,
    type: z.literal('waba.gate_closed'),
    data: z.object({ state: z.string(), reason: z.string().optional() }),
  }),
  'waba.escalated': z.object({
    ...base,
    type: z.literal('waba.escalated'),
    data: z.object({ level: z.number().int().min(1) }),
  }),
  'waba.gate_opened': z.object({ ...base, type: z.literal('waba.gate_opened'), data: z.object({}) }),
  'waba.reconnect_abandoned': z.object({
    ...base,
    type: z.literal('waba.reconnect_abandoned'),
    data: z.object({ reason: z.string().optional() }),
  }),
  'waba.partner_removed': z.object({
    ...base,
    type: z.literal('waba.partner_removed'),
    data: z.object({ reason: z.string().optional() }),
  }),
  'message.queued': z.object({
    ...base,
    type: z.literal('message.queued'),
    data: z.object({ messageId: z.string() }),
  }),
  'message.sent': z.object({
    ...base,
    type: z.literal('message.sent'),
    data: z.object({
      messageId: z.string(),
      wamid: z.string().optional(),
      sentAs: z
        .literal('fallback_template')
        .optional()
        .describe("the customer service window was closed: the send's fallbackTemplate went instead"),
    }),
  }),
  'message.failed': z.object({
    ...base,
    type: z.literal('message.failed'),
    data: z.object({
      messageId: z.string(),
      reason: z.string().optional(),
      code: z.number().int().optional().describe("Meta's error code, when Meta refused it"),
    }),
  }),
  'message.expired': z.object({
    ...base,
    type: z.literal('message.expired'),
    data: z.object({ messageId: z.string(), reason: z.string().optional() }),
  }),
  'message.in_doubt': z
    .object({
      ...base,
      type: z.literal('message.in_doubt'),
      data: z.object({ messageId: z.string() }),
    })
    .describe(
      "A send's answer was lost (it may have reached Meta). Told once per message; a later message.sent or message.failed settles it.",
    ),
  'message.requeued': z
    .object({
      ...base,
      type: z.literal('message.requeued'),
      data: z.object({
        messageId: z.string(),
        wamid: z.string().describe('the send Meta accepted and then failed'),
        code: z.number().int().describe("Meta's error code on the failed status"),
      }),
    })
    .describe(
      'Meta failed a message after accepting it (a failed status saying the account cannot send): it is queued again, once, and a second message.sent or message.failed follows.',
    ),
} as const;

export type ServiceEventType = keyof typeof serviceEventSchemas;
export type ServiceEvent = z.output<(typeof serviceEventSchemas)[ServiceEventType]>;

/** The catalog as JSON Schemas, one per type. */
export function serviceEventCatalog(): Record<string, unknown> {
  return {
    $comment: 'coexist-relay service events; generated from src/relay/events.ts (npm run openapi writes it)',
    field: SERVICE_EVENTS_FIELD,
    events: Object.fromEntries(
      Object.entries(serviceEventSchemas).map(([type, schema]) => [type, z.toJSONSchema(schema)]),
    ),
  };
}

/**
 * The events a change of the WABA's document means (pure). Ids derive from the WABA, the new
 * state's `since` and the change, so a retried save produces the same ids.
 */
export function wabaEventsOf(prev: WabaSnapshot | undefined, next: WabaSnapshot): ServiceEvent[] {
  const events: ServiceEvent[] = [];
  const at = next.updatedAt;
  const id = (what: string) => `${next.wabaId}:${next.since}:${what}`;
  const before = prev?.state ?? 'connected';
  const reason = next.reason ? { reason: next.reason } : {};
  if (next.state !== before) {
    switch (next.state) {
      case 'offboarded':
        if (before === 'connected' || before === 'draining') {
          events.push({
            id: id('gate_closed'),
            type: 'waba.gate_closed',
            at,
            wabaId: next.wabaId,
            data: { state: next.state, ...reason },
          });
        }
        break;
      case 'connected':
        events.push({ id: id('gate_opened'), type: 'waba.gate_opened', at, wabaId: next.wabaId, data: {} });
        break;
      case 'reconnect_abandoned':
        events.push({ id: id('abandoned'), type: 'waba.reconnect_abandoned', at, wabaId: next.wabaId, data: reason });
        break;
      case 'partner_removed':
        events.push({ id: id('partner_removed'), type: 'waba.partner_removed', at, wabaId: next.wabaId, data: reason });
        break;
      default:
        break;
    }
  }
  if (next.escalationLevel > (prev?.escalationLevel ?? 0) && next.escalationLevel > 0) {
    const level = next.escalationLevel;
    events.push({ id: id(`escalated:${level}`), type: 'waba.escalated', at, wabaId: next.wabaId, data: { level } });
  }
  return events;
}

/**
 * The events of messages' final outcomes (pure). Ids are `<messageId>:<status>`: a message has one
 * final outcome, so a retried write produces the same ids. `cancelled` is not told.
 */
export function messageEventsOf(wabaId: string, settlements: readonly Settlement[]): ServiceEvent[] {
  return settlements.flatMap((s): ServiceEvent[] => {
    const id = `${sendKey(s.messageId, s.round)}:${s.status}`;
    const reason = s.reason ? { reason: s.reason } : {};
    switch (s.status) {
      case 'sent':
        return [
          {
            id,
            type: 'message.sent',
            at: s.at,
            wabaId,
            data: {
              messageId: s.messageId,
              ...(s.wamid ? { wamid: s.wamid } : {}),
              ...(s.sentAs && { sentAs: s.sentAs }),
            },
          },
        ];
      case 'failed':
        return [
          {
            id,
            type: 'message.failed',
            at: s.at,
            wabaId,
            data: { messageId: s.messageId, ...reason, ...(s.error ? { code: s.error.code } : {}) },
          },
        ];
      case 'expired':
        return [{ id, type: 'message.expired', at: s.at, wabaId, data: { messageId: s.messageId, ...reason } }];
      default:
        return [];
    }
  });
}

/**
 * A message's step before its outcome: `message.queued` (the gate is closed) or
 * `message.in_doubt` (a send's answer was lost; told once, when the ledger first sees it).
 * Ids are `<sendKey>:queued` / `<sendKey>:in_doubt` (the message id for its first send), the same
 * on every retry.
 */
export const messageStepEvent = (
  type: 'message.queued' | 'message.in_doubt',
  wabaId: string,
  messageId: string,
  at: string,
  round?: number,
): ServiceEvent => ({
  id: `${sendKey(messageId, round)}:${type.slice('message.'.length)}`,
  type,
  at,
  wabaId,
  data: { messageId },
});

/** True when some target asks for service events (else emitting costs nothing at all). */
export const wantsServiceEvents = (targets: readonly ForwardTarget[]): boolean =>
  targets.some((t) => t.fields?.includes(SERVICE_EVENTS_FIELD));

/**
 * Records service events for every target that wants them (idempotent per event id: a retry
 * inserts the same `_id`s): one insert of the forward entries, each holding its event's bytes.
 */
export async function emitServiceEvents(
  c: Collections,
  targets: readonly ForwardTarget[],
  events: readonly ServiceEvent[],
): Promise<void> {
  if (events.length === 0 || !wantsServiceEvents(targets)) return;
  const entries: ForwardDoc[] = [];
  for (const event of events) {
    const forward = targets
      // Only targets that ask for them by name: a Meta-only receiver never sees our events.
      .filter(
        (t) =>
          t.fields?.includes(SERVICE_EVENTS_FIELD) &&
          wants(t, { fields: [SERVICE_EVENTS_FIELD], wabaIds: [event.wabaId] }),
      )
      .map((t) => t.name);
    if (forward.length === 0) continue;
    const atMs = Date.parse(event.at) || Date.now();
    const digest = createHash('sha256').update(event.id).digest('hex').slice(0, 16);
    const delivery = {
      _id: `${atMs.toString(36).padStart(9, '0')}:evt:${digest}`,
      kind: 'service_event' as const,
      receivedAt: new Date(atMs).toISOString(),
      raw: Buffer.from(JSON.stringify(event)).toString('base64'),
      fields: [SERVICE_EVENTS_FIELD],
    };
    entries.push(...pendingEntries(delivery, forward, [event.wabaId]));
  }
  await insertForwards(c, entries);
}
