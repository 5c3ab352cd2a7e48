/**
 * Builders for Meta-shaped webhook payloads, as in /work/shared/reference/payloads/. Used by the
 * simulator's CLI and by tests that need a realistic `account_update` or `messages.statuses`
 * webhook. Pure functions: they return plain objects; sign and send them with `sendWebhook`.
 */

/** Meta's placeholder ids from the documentation examples. */
export const SAMPLE_IDS = {
  wabaId: '102290129340398',
  phoneNumberId: '106540352242922',
  displayPhoneNumber: '15550783881',
  partnerBusinessId: '2949482758682047',
  ownerBusinessId: '2329417887457253',
  /** From the health-status documentation's example. */
  appId: '634974688087057',
} as const;

/** `account_update` events the service reacts to; any other Meta event name is accepted too. */
export type AccountUpdateEvent =
  'ACCOUNT_OFFBOARDED' | 'ACCOUNT_RECONNECTED' | 'PARTNER_REMOVED' | 'PARTNER_ADDED' | (string & {});

export interface DisconnectionInfo {
  reason: string;
  initiated_by: 'USER' | 'SYSTEM' | (string & {});
}

export interface AccountUpdateOptions {
  /** `entry[].time`, Unix seconds. Defaults to now. */
  time?: number;
  /**
   * Extra `value.waba_info` fields. For `PARTNER_*` events `waba_info` is always present with
   * `waba_id` = the WABA and a default `owner_business_id`; for other events only when given.
   */
  wabaInfo?: Record<string, unknown>;
  disconnectionInfo?: DisconnectionInfo;
  /**
   * `entry[].id`. Defaults like Meta's examples: the partner's business id for `PARTNER_*`
   * events, the WABA id otherwise.
   */
  entryId?: string;
}

/** The webhook envelope every Meta WhatsApp webhook shares. */
export interface WebhookEnvelope {
  object: 'whatsapp_business_account';
  entry: Array<{
    id: string;
    time?: number;
    changes: Array<{ field: string; value: Record<string, unknown> }>;
  }>;
}

const nowSeconds = (): number => Math.floor(Date.now() / 1000);

/**
 * An `account_update` webhook for one WABA, shaped like Meta's samples: offboard / reconnect carry
 * only `value.event` with `entry[].id` = WABA; `PARTNER_REMOVED` (and other partner events) carry
 * `value.waba_info.waba_id` = WABA under the partner's `entry[].id`, plus `disconnection_info`
 * when given.
 */
export function accountUpdatePayload(
  wabaId: string,
  event: AccountUpdateEvent,
  options: AccountUpdateOptions = {},
): WebhookEnvelope {
  const isPartnerEvent = event.startsWith('PARTNER_');
  const value: Record<string, unknown> = { event };
  if (isPartnerEvent || options.wabaInfo) {
    value.waba_info = {
      waba_id: wabaId,
      ...(isPartnerEvent ? { owner_business_id: SAMPLE_IDS.ownerBusinessId } : {}),
      ...options.wabaInfo,
    };
  }
  if (options.disconnectionInfo) value.disconnection_info = options.disconnectionInfo;
  const entryId = options.entryId ?? (isPartnerEvent ? SAMPLE_IDS.partnerBusinessId : wabaId);
  return {
    object: 'whatsapp_business_account',
    entry: [{ id: entryId, time: options.time ?? nowSeconds(), changes: [{ field: 'account_update', value }] }],
  };
}

/** One status to report, in our names; `statusPayload` turns it into Meta's shape. */
export interface StatusInput {
  /** The wamid the send returned. */
  id: string;
  status: 'sent' | 'delivered' | 'read' | 'failed' | (string & {});
  /** Recipient WhatsApp id (digits). */
  recipientId: string;
  /** Unix seconds (number or string, Meta sends strings). Defaults to now. */
  timestamp?: number | string;
  /** For `failed`: Meta's error(s). `title` and `message` default to a generic text. */
  errors?: Array<{ code: number; title?: string; message?: string; details?: string }>;
  /**
   * The send's `biz_opaque_callback_data`. Meta echoes it, unchanged, as
   * `statuses[].biz_opaque_callback_data` in the status webhooks of that message (only when the
   * send carried one).
   */
  bizOpaqueCallbackData?: string;
}

/** The parts of an accepted send (the simulator's `AcceptedMessage`) a status needs. */
export interface AcceptedSend {
  wamid: string;
  to: string;
  clientId?: string;
}

/**
 * The status Meta would report for an accepted send: its wamid, the recipient's digits, and the
 * send's `biz_opaque_callback_data` (`clientId`) when it had one.
 */
export function statusFor(
  message: AcceptedSend,
  status: StatusInput['status'],
  extra: Pick<StatusInput, 'timestamp' | 'errors'> = {},
): StatusInput {
  const input: StatusInput = { id: message.wamid, status, recipientId: message.to.replace(/\D/g, ''), ...extra };
  if (message.clientId !== undefined) input.bizOpaqueCallbackData = message.clientId;
  return input;
}

/**
 * A `messages` webhook carrying `statuses[]` for one phone number, shaped like
 * messages_status_sent.json / messages_status_failed.json (`entry[].id` = WABA).
 */
export function statusPayload(
  wabaId: string,
  phoneNumberId: string,
  statuses: StatusInput[],
  options: { displayPhoneNumber?: string } = {},
): WebhookEnvelope {
  return messagesWebhook(wabaId, phoneNumberId, options, { statuses: statuses.map(toMetaStatus) });
}

/** A `messages` webhook of one phone number with the given `value` fields besides `messaging_product` and `metadata`. */
function messagesWebhook(
  wabaId: string,
  phoneNumberId: string,
  options: { displayPhoneNumber?: string },
  fields: Record<string, unknown>,
): WebhookEnvelope {
  const value = {
    messaging_product: 'whatsapp',
    metadata: {
      display_phone_number: options.displayPhoneNumber ?? SAMPLE_IDS.displayPhoneNumber,
      phone_number_id: phoneNumberId,
    },
    ...fields,
  };
  return { object: 'whatsapp_business_account', entry: [{ id: wabaId, changes: [{ field: 'messages', value }] }] };
}

/** One customer's text message to a business number, in our names; `inboundPayload` turns it into Meta's shape. */
export interface InboundInput {
  /** The customer's WhatsApp id (digits). */
  from: string;
  /** Unix seconds the customer sent it. Defaults to now. */
  timestamp?: number;
  /** Defaults to `hello`. */
  body?: string;
  /** `messages[].id`. Defaults to a fresh wamid. */
  id?: string;
  /** The customer's business-scoped user id: `contacts[].user_id`. */
  userId?: string;
}

/**
 * A `messages` webhook carrying one inbound text message (`contacts[]` and `messages[]`), shaped
 * like Meta's "text message received" example: what opens the customer service window.
 */
export function inboundPayload(
  wabaId: string,
  phoneNumberId: string,
  message: InboundInput,
  options: { displayPhoneNumber?: string } = {},
): WebhookEnvelope {
  const from = message.from;
  return messagesWebhook(wabaId, phoneNumberId, options, {
    contacts: [
      {
        profile: { name: 'Customer' },
        wa_id: from,
        ...(message.userId !== undefined ? { user_id: message.userId } : {}),
      },
    ],
    messages: [
      {
        from,
        id: message.id ?? `wamid.IN${Buffer.from(`${from}.${Date.now()}.${Math.random()}`).toString('base64')}`,
        timestamp: String(message.timestamp ?? nowSeconds()),
        type: 'text',
        text: { body: message.body ?? 'hello' },
      },
    ],
  });
}

function toMetaStatus(s: StatusInput): Record<string, unknown> {
  const status: Record<string, unknown> = {
    id: s.id,
    status: s.status,
    timestamp: String(s.timestamp ?? nowSeconds()),
    recipient_id: s.recipientId,
  };
  if (s.bizOpaqueCallbackData !== undefined) status.biz_opaque_callback_data = s.bizOpaqueCallbackData;
  if (s.errors) status.errors = s.errors.map(toMetaStatusError);
  return status;
}

function toMetaStatusError(e: NonNullable<StatusInput['errors']>[number]): Record<string, unknown> {
  const title = e.title ?? e.message ?? `Error ${e.code}`;
  return {
    code: e.code,
    title,
    message: e.message ?? title,
    error_data: { details: e.details ?? title },
    href: '/documentation/business-messaging/whatsapp/support/error-codes',
  };
}
