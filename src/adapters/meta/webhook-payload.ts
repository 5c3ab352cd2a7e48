import { createHash } from 'node:crypto';
import { z } from 'zod';
import { BSUID_PATTERN } from '../../contracts';

/**
 * The one place that reads Meta's webhook field names. `parseWebhookBody` projects a decoded
 * webhook POST body into a small typed value: the `account_update` events (one per change, with
 * the WABA id resolved and a stable dedupe key), the message `statuses`, and counts of every other
 * change. It is pure and synchronous: no I/O, no clock.
 *
 * Tolerance: key order, extra fields and missing optional fields are accepted. A change (or a
 * status inside a change) whose shape is wrong is listed in `skipped` with a reason and the rest
 * of the body is still used; only a body that is not a webhook envelope at all throws
 * `WebhookPayloadError`.
 */

/** The `object` of every WhatsApp Business Account webhook. */
export const WABA_OBJECT = 'whatsapp_business_account';

/** One `account_update` change. */
export interface AccountUpdate {
  /** `value.waba_info.waba_id` when present, else `entry[].id` (Meta's partner events carry the
   *  partner's business id in `entry[].id`; offboard/reconnect events carry the WABA id there). */
  wabaId: string;
  /** Meta's event name, untouched (`ACCOUNT_OFFBOARDED`, `PARTNER_ADDED`, or one we do not know). */
  event: string;
  /** `entry[].time` in Unix seconds, when Meta sent a usable one (numbers and numeric strings;
   *  values above 1e12 are taken as milliseconds). When Meta *sent* the webhook, not when it happened. */
  metaTime?: number;
  /** `entry[].id` as sent (WABA id or partner business id, see `wabaId`). */
  entryId: string;
  /** The change's `value` object as received. */
  raw: Record<string, unknown>;
  /** Short text for operators: disconnection reason, ban state, violation or restriction types. */
  detail?: string;
  /** `value.disconnection_info` (PARTNER_REMOVED), when Meta sent one. */
  disconnectionInfo?: { reason?: string; initiatedBy?: string };
  /** Dedupe key: sha256 hex of `wabaId|event|metaTime|canonical JSON of value`. A redelivery of
   *  the same content gives the same key; a different event, WABA, time or value gives another. */
  key: string;
}

/** One Meta error attached to a status. */
export interface StatusError {
  code: number;
  title?: string;
  message?: string;
  /** `error_data.details`. */
  details?: string;
}

/** One entry of a `messages` change's `value.statuses[]`. */
export interface StatusUpdate {
  /** `entry[].id` (the WABA id for `messages` webhooks). */
  wabaId: string;
  /** `value.metadata.phone_number_id`. */
  phoneNumberId: string;
  /** `statuses[].id`: the wamid returned by the send. */
  wamid: string;
  status: 'sent' | 'delivered' | 'read' | 'failed' | (string & {});
  /** `statuses[].timestamp` in Unix seconds. */
  timestamp: number;
  /** `statuses[].recipient_id`; empty string when Meta did not send one. */
  recipientId: string;
  /** Errors with a usable numeric code (others are dropped). Absent when Meta sent none. */
  errors?: StatusError[];
  /** `statuses[].biz_opaque_callback_data`: the message id the send was tagged with, when present. */
  bizOpaqueCallbackData?: string;
}

/**
 * One customer message of a `messages` change's `value.messages[]` (an inbound message: never an
 * echo of the business's own, never a status or history). What opens the customer service window.
 */
export interface InboundMessage {
  /** `value.metadata.phone_number_id`: the business number it was sent to. */
  phoneNumberId: string;
  /** `messages[].from`: the customer's phone number (WhatsApp id). */
  from: string;
  /** `messages[].timestamp` in Unix seconds: when the customer sent it. */
  timestamp: number;
}

/** A customer's phone number and business-scoped user id, from a contact that carried both. */
export interface CustomerIdentity {
  /** `contacts[].wa_id`. */
  phone: string;
  /** `contacts[].user_id` (a BSUID). */
  bsuid: string;
}

/** A part of the body that was left out, and why. Indexes are positions in the body's arrays. */
export interface SkippedChange {
  entryIndex: number;
  changeIndex?: number;
  /** Position in `value.statuses[]` when one status was left out. */
  statusIndex?: number;
  field?: string;
  reason: string;
}

/** What `parseWebhookBody` returns. Counting records have no prototype (keys come from Meta). */
export interface ParsedWebhook {
  /** The envelope's `object`; WABA webhooks say `whatsapp_business_account`. */
  object: string;
  /** Every well-formed `account_update` change, in body order (entries, then changes). */
  accountUpdates: AccountUpdate[];
  /** Every well-formed status of every `messages` change, in body order. */
  statuses: StatusUpdate[];
  /** Every well-formed customer message of every `messages` change (`system` messages left out), in body order. */
  inbound: InboundMessage[];
  /** Every `messages` change's contact that names both a phone number and a BSUID, in body order. */
  identities: CustomerIdentity[];
  /** Changes not represented above, by field: `history`, `smb_message_echoes`,
   *  `smb_app_state_sync`, …, and `messages` changes carrying anything other than statuses
   *  (inbound `messages[]`, also read into `inbound`; `errors[]`). Counted here. */
  otherChanges: Record<string, number>;
  /** Every change by field, including `account_update`, status-only and skipped changes (metrics). */
  changesByField: Record<string, number>;
  /** The distinct `entry[].id`s (WABA ids on WABA webhooks), in body order (forward filters, order). */
  entryIds: string[];
  skipped: SkippedChange[];
}

/** Thrown by `parseWebhookBody` when the body is not a webhook envelope at all; `reason` fits a 400. */
export class WebhookPayloadError extends Error {
  override name = 'WebhookPayloadError';
  constructor(readonly reason: string) {
    super(`not a webhook envelope: ${reason}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Shapes (zod): only the fields this service uses; everything else passes through untouched.

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** Graph ids are strings; a safe-integer number is accepted and turned into its decimal string. */
const idSchema = z.union([
  z.string().trim().min(1),
  z
    .number()
    .int()
    .nonnegative()
    .refine((n) => Number.isSafeInteger(n), 'id number too large to be exact')
    .transform((n) => String(n)),
]);

/** Unix time as a number or numeric string; > 1e12 is read as milliseconds. Whole seconds out. */
const unixTimeSchema = z
  .union([
    z.number(),
    z
      .string()
      .trim()
      .regex(/^\d+(\.\d+)?$/, 'not a numeric string')
      .transform(Number),
  ])
  .refine((n) => Number.isFinite(n) && n > 0, 'not a positive time')
  .transform((n) => Math.floor(n > 1e12 ? n / 1000 : n));

const optionalText = z.string().optional().catch(undefined);

const envelopeSchema = z.object({
  object: z.string({ error: 'object is missing or not a string' }),
  entry: z.array(z.unknown(), { error: 'entry is missing or not an array' }),
});

const entrySchema = z.object({
  id: idSchema,
  /** Absent on some samples (messages, history); a malformed time is dropped, not fatal. */
  time: unixTimeSchema.optional().catch(undefined),
  changes: z.array(z.unknown(), { error: 'changes is missing or not an array' }),
});

const changeSchema = z.object({
  field: z.string().min(1),
  value: z.custom<Record<string, unknown>>(isPlainObject, 'value is missing or not an object'),
});

const accountUpdateValueSchema = z.object({
  event: z.string().trim().min(1),
  /** When present it must name the WABA: falling back to `entry[].id` (a partner business id on
   *  partner events) would attribute the event to the wrong account. */
  waba_info: z.object({ waba_id: idSchema }).nullish(),
  disconnection_info: z.object({ reason: optionalText, initiated_by: optionalText }).optional().catch(undefined),
  ban_info: z.object({ waba_ban_state: optionalText }).optional().catch(undefined),
  violation_info: z.object({ violation_type: optionalText }).optional().catch(undefined),
  restriction_info: z
    .array(z.object({ restriction_type: optionalText }).catch({ restriction_type: undefined }))
    .optional()
    .catch(undefined),
});

const messagesValueSchema = z.object({
  metadata: z
    .object({ phone_number_id: idSchema.optional().catch(undefined) })
    .optional()
    .catch(undefined),
  statuses: z.array(z.unknown()).optional(),
  messages: z.array(z.unknown()).optional().catch(undefined),
  contacts: z.array(z.unknown()).optional().catch(undefined),
});

const contactSchema = z.object({ wa_id: z.string().regex(/^\d{1,32}$/), user_id: z.string().regex(BSUID_PATTERN) });

/** A customer as webhooks name them: a WhatsApp id (digits) or a BSUID. Anything else names no window. */
const customerIdSchema = z.union([z.string().regex(/^\d{1,32}$/), z.string().regex(BSUID_PATTERN)]);

const inboundSchema = z.object({
  from: customerIdSchema,
  timestamp: unixTimeSchema,
  type: z.string().optional().catch(undefined),
});

const statusErrorSchema = z.object({
  code: z.union([
    z.number().int(),
    z
      .string()
      .trim()
      .regex(/^-?\d+$/)
      .transform(Number),
  ]),
  title: optionalText,
  message: optionalText,
  error_data: z.object({ details: optionalText }).optional().catch(undefined),
});

const statusSchema = z.object({
  id: z.string().min(1),
  status: z.string().min(1),
  timestamp: unixTimeSchema,
  recipient_id: idSchema.optional().catch(undefined),
  errors: z.array(z.unknown()).optional().catch(undefined),
  biz_opaque_callback_data: z.string().min(1).max(512).optional().catch(undefined),
});

/** `path: message` of the first issue, for reasons. */
function describe(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return 'invalid';
  const where = issue.path.length > 0 ? issue.path.map(String).join('.') : '';
  return where ? `${where}: ${issue.message}` : issue.message;
}

// ---------------------------------------------------------------------------------------------
// Dedupe keys.

const MAX_CANONICAL_DEPTH = 64;

/** JSON with object keys sorted at every level (arrays keep their order); undefined when deeper
 *  than MAX_CANONICAL_DEPTH. Input comes from JSON.parse, so there are no cycles. */
function canonicalJson(value: unknown, depth = 0): string | undefined {
  if (depth > MAX_CANONICAL_DEPTH) return undefined;
  if (Array.isArray(value)) {
    const parts: string[] = [];
    for (const item of value) {
      const s = canonicalJson(item, depth + 1);
      if (s === undefined) return undefined;
      parts.push(s);
    }
    return `[${parts.join(',')}]`;
  }
  if (isPlainObject(value)) {
    const parts: string[] = [];
    for (const k of Object.keys(value).sort()) {
      const s = canonicalJson(value[k], depth + 1);
      if (s === undefined) return undefined;
      parts.push(`${JSON.stringify(k)}:${s}`);
    }
    return `{${parts.join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

function accountUpdateKey(wabaId: string, event: string, metaTime: number | undefined, canonical: string): string {
  return createHash('sha256')
    .update(`${wabaId}|${event}|${metaTime ?? ''}|${canonical}`)
    .digest('hex');
}

// ---------------------------------------------------------------------------------------------
// The parser.

const MAX_DETAIL_CHARS = 500;

/** `disconnection_info` as plain fields, or nothing when Meta sent none. */
function disconnectionOf(d: { reason?: string | undefined; initiated_by?: string | undefined } | undefined): {
  disconnectionInfo?: { reason?: string; initiatedBy?: string };
} {
  if (!d || (!d.reason && !d.initiated_by)) return {};
  return {
    disconnectionInfo: {
      ...(d.reason ? { reason: d.reason } : {}),
      ...(d.initiated_by ? { initiatedBy: d.initiated_by } : {}),
    },
  };
}
function accountUpdateDetail(v: z.output<typeof accountUpdateValueSchema>): string | undefined {
  const parts: string[] = [];
  const d = v.disconnection_info;
  if (d && (d.reason || d.initiated_by)) {
    parts.push(
      `disconnection: ${d.reason ?? 'unknown reason'}${d.initiated_by ? ` (initiated by ${d.initiated_by})` : ''}`,
    );
  }
  if (v.ban_info?.waba_ban_state) parts.push(`ban state: ${v.ban_info.waba_ban_state}`);
  if (v.violation_info?.violation_type) parts.push(`violation: ${v.violation_info.violation_type}`);
  const restrictions = (v.restriction_info ?? []).map((r) => r.restriction_type).filter((t): t is string => !!t);
  if (restrictions.length > 0) parts.push(`restrictions: ${restrictions.join(', ')}`);
  if (parts.length === 0) return undefined;
  const text = parts.join('; ');
  return text.length > MAX_DETAIL_CHARS ? text.slice(0, MAX_DETAIL_CHARS) : text;
}

function bump(counts: Record<string, number>, key: string): void {
  counts[key] = (counts[key] ?? 0) + 1;
}

/**
 * Projects a decoded webhook body (the result of `JSON.parse` on the verified bytes). Throws
 * `WebhookPayloadError` only when `json` is not an envelope (not an object, no string `object`,
 * no `entry` array); every other defect is reported in `skipped`. Works for any `object`: the
 * caller decides what to do with non-WABA ones.
 */
export function parseWebhookBody(json: unknown): ParsedWebhook {
  if (!isPlainObject(json)) throw new WebhookPayloadError('body is not a JSON object');
  const envelope = envelopeSchema.safeParse(json);
  if (!envelope.success) throw new WebhookPayloadError(describe(envelope.error));

  const result: ParsedWebhook = {
    object: envelope.data.object,
    accountUpdates: [],
    statuses: [],
    inbound: [],
    identities: [],
    otherChanges: Object.create(null) as Record<string, number>,
    changesByField: Object.create(null) as Record<string, number>,
    entryIds: [],
    skipped: [],
  };

  const entryIdsSeen = new Set<string>();
  envelope.data.entry.forEach((rawEntry, entryIndex) => {
    const entry = entrySchema.safeParse(rawEntry);
    if (!entry.success) {
      result.skipped.push({ entryIndex, reason: `entry ${describe(entry.error)}` });
      return;
    }
    const { id: entryId, time: metaTime, changes } = entry.data;
    if (!entryIdsSeen.has(entryId)) {
      entryIdsSeen.add(entryId);
      result.entryIds.push(entryId);
    }

    changes.forEach((rawChange, changeIndex) => {
      const rawField = isPlainObject(rawChange) && typeof rawChange.field === 'string' ? rawChange.field : undefined;
      if (rawField) bump(result.changesByField, rawField);
      const change = changeSchema.safeParse(rawChange);
      if (!change.success) {
        result.skipped.push({ entryIndex, changeIndex, field: rawField, reason: `change ${describe(change.error)}` });
        return;
      }
      const { field, value } = change.data;
      const skip = (reason: string, statusIndex?: number) =>
        result.skipped.push({
          entryIndex,
          changeIndex,
          field,
          reason,
          ...(statusIndex === undefined ? {} : { statusIndex }),
        });

      if (field === 'account_update') {
        const v = accountUpdateValueSchema.safeParse(value);
        if (!v.success) return skip(`value ${describe(v.error)}`);
        const wabaId = v.data.waba_info?.waba_id ?? entryId;
        const canonical = canonicalJson(value);
        if (canonical === undefined) return skip('value nested too deeply');
        const detail = accountUpdateDetail(v.data);
        result.accountUpdates.push({
          wabaId,
          event: v.data.event,
          ...(metaTime === undefined ? {} : { metaTime }),
          entryId,
          raw: value,
          ...(detail === undefined ? {} : { detail }),
          ...disconnectionOf(v.data.disconnection_info),
          key: accountUpdateKey(wabaId, v.data.event, metaTime, canonical),
        });
        return;
      }

      if (field === 'messages') {
        // Inbound messages, value-level errors and anything else but statuses are counted; inbound
        // messages are also read (the customer service window).
        const carriesOther = Object.keys(value).some(
          (k) => k !== 'statuses' && k !== 'metadata' && k !== 'messaging_product' && k !== 'contacts',
        );
        if (carriesOther || !('statuses' in value)) bump(result.otherChanges, field);
        if (!('statuses' in value) && !('messages' in value)) return;
        const v = messagesValueSchema.safeParse(value);
        if (!v.success) return skip(`value ${describe(v.error)}`);
        for (const rawContact of v.data.contacts ?? []) {
          const contact = contactSchema.safeParse(rawContact);
          if (contact.success) result.identities.push({ phone: contact.data.wa_id, bsuid: contact.data.user_id });
        }
        const phoneNumberId = v.data.metadata?.phone_number_id;
        const messages = v.data.messages ?? [];
        if (messages.length > 0 && !phoneNumberId) skip('messages without value.metadata.phone_number_id');
        // A window is named by a Cloud API number id (digits): any other text names none.
        if (phoneNumberId && /^\d{1,32}$/.test(phoneNumberId)) {
          for (const rawMessage of messages) {
            const m = inboundSchema.safeParse(rawMessage);
            // A `system` message (the customer changed number) is Meta's, not the customer's.
            if (m.success && m.data.type !== 'system')
              result.inbound.push({ phoneNumberId, from: m.data.from, timestamp: m.data.timestamp });
          }
        }
        const statuses = v.data.statuses ?? [];
        if (statuses.length === 0) return;
        if (!phoneNumberId) return skip('statuses without value.metadata.phone_number_id');
        statuses.forEach((rawStatus, statusIndex) => {
          const s = statusSchema.safeParse(rawStatus);
          if (!s.success) return skip(`status ${describe(s.error)}`, statusIndex);
          let errors: StatusError[] | undefined;
          if (s.data.errors) {
            errors = [];
            for (const rawError of s.data.errors) {
              const e = statusErrorSchema.safeParse(rawError);
              if (!e.success) continue;
              const details = e.data.error_data?.details;
              errors.push({
                code: e.data.code,
                ...(e.data.title === undefined ? {} : { title: e.data.title }),
                ...(e.data.message === undefined ? {} : { message: e.data.message }),
                ...(details === undefined ? {} : { details }),
              });
            }
          }
          result.statuses.push({
            wabaId: entryId,
            phoneNumberId,
            wamid: s.data.id,
            status: s.data.status,
            timestamp: s.data.timestamp,
            recipientId: s.data.recipient_id ?? '',
            ...(errors === undefined ? {} : { errors }),
            ...(s.data.biz_opaque_callback_data === undefined
              ? {}
              : { bizOpaqueCallbackData: s.data.biz_opaque_callback_data }),
          });
        });
        return;
      }

      bump(result.otherChanges, field);
    });
  });

  return result;
}
