/**
 * The one reader of Meta's phone-number node for the send gate's probe
 * (`GET /<version>/<PHONE_NUMBER_ID>?fields=health_status,status,platform_type,is_on_biz_app`).
 * Meta documents:
 * - `health_status.can_send_message`: `AVAILABLE`, `LIMITED` (can send, with limits) or `BLOCKED`,
 *   the worst of its `entities[]` (`PHONE_NUMBER`, `WABA`, `BUSINESS`, `APP`), each with its own
 *   `can_send_message` and `errors[]`. A calling (SIP) error on the app, such as 138024/138025,
 *   makes the aggregate `BLOCKED` while messages still go;
 * - `status`: the number's connection state (`CONNECTED`; `DISCONNECTED` while a coexistence
 *   number's Cloud API companion is offboarded; `PENDING`, `FLAGGED`, `RESTRICTED`, `BANNED`, ...);
 * - `platform_type`: `CLOUD_API` when the number is on the Cloud API (`NOT_APPLICABLE` while
 *   offboarded, `ON_PREMISE` for the old API);
 * - `is_on_biz_app`: whether the number is (also) on the WhatsApp Business app. A coexistence
 *   number answers `true` while the Cloud API sends for it, a Cloud-API-only number `false`:
 *   neither says the Cloud API cannot send, so it is recorded, never held against the number.
 *
 * A number is usable when its `PHONE_NUMBER` entity can send (`AVAILABLE` or `LIMITED`), it is
 * `CONNECTED`, and it is on the Cloud API; a field Meta did not answer does not count against it.
 * The other entities' errors are recorded in the summary, not held against the number: a wrong
 * "usable" corrects itself (the next send fails and closes the gate again), a wrong "unusable"
 * keeps a reconnected number paused without anyone noticing. Only when Meta lists no
 * `PHONE_NUMBER` entity is the aggregate read in its place.
 */

/** The fields the probe asks for. */
export const PROBE_FIELDS = 'health_status,status,platform_type,is_on_biz_app';

/** A health entity other than the number that cannot send freely (`LIMITED` or `BLOCKED`). */
export interface OtherEntityHealth {
  /** Meta's `entity_type`: `WABA`, `BUSINESS`, `APP`, ... */
  type: string;
  id?: string;
  canSendMessage?: string;
  errorCodes: number[];
}

/** What the probe read from one phone-number node. */
export interface PhoneHealth {
  id: string;
  usable: boolean;
  /** The `PHONE_NUMBER` entity's `can_send_message`; the aggregate's when Meta listed no such entity. */
  canSendMessage?: string;
  /** `health_status.can_send_message`: the worst of all entities. */
  overallCanSendMessage?: string;
  status?: string;
  platformType?: string;
  isOnBizApp?: boolean;
  /** Meta's error codes on the number's entity (every entity's when there is none). */
  errorCodes: number[];
  /** The other entities that are not `AVAILABLE`: recorded, not held against the number. */
  otherEntities: OtherEntityHealth[];
  /**
   * Plain words, e.g. `can_send_message AVAILABLE (overall BLOCKED), status CONNECTED, platform
   * CLOUD_API, is_on_biz_app true; not held against it: APP 634974688087057 BLOCKED (138024)`.
   */
  summary: string;
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const text = (v: unknown): string | undefined => (typeof v === 'string' && v.length > 0 ? v : undefined);
const canSend = (level: string | undefined): boolean =>
  level === undefined || level === 'AVAILABLE' || level === 'LIMITED';

function errorCodesOf(entity: Record<string, unknown>): number[] {
  if (!Array.isArray(entity.errors)) return [];
  return entity.errors.flatMap((e) => (isRecord(e) && typeof e.error_code === 'number' ? [e.error_code] : []));
}

function entityHealth(entity: Record<string, unknown>): OtherEntityHealth {
  return {
    type: text(entity.entity_type) ?? '?',
    id: text(entity.id),
    canSendMessage: text(entity.can_send_message),
    errorCodes: errorCodesOf(entity),
  };
}

/** The number's own entity: the `PHONE_NUMBER` entity with the node's id, else the only `PHONE_NUMBER` one. */
function phoneEntity(entities: Record<string, unknown>[], id: string): Record<string, unknown> | undefined {
  const phones = entities.filter((e) => e.entity_type === 'PHONE_NUMBER');
  return phones.find((e) => e.id === id) ?? (phones.length === 1 ? phones[0] : undefined);
}

/** Reads a phone-number node; undefined when the answer is not one (no `id`). */
export function readPhoneHealth(json: unknown): PhoneHealth | undefined {
  if (!isRecord(json) || !text(json.id)) return undefined;
  const id = json.id as string;
  const health = isRecord(json.health_status) ? json.health_status : undefined;
  const overallCanSendMessage = text(health?.can_send_message);
  const status = text(json.status);
  const platformType = text(json.platform_type);
  const isOnBizApp = typeof json.is_on_biz_app === 'boolean' ? json.is_on_biz_app : undefined;
  const entities = (Array.isArray(health?.entities) ? health.entities : []).filter(isRecord);
  const phone = phoneEntity(entities, id);

  const canSendMessage = phone ? text(phone.can_send_message) : overallCanSendMessage;
  const errorCodes = phone ? errorCodesOf(phone) : entities.flatMap(errorCodesOf);
  const otherEntities = phone
    ? entities.filter((e) => e !== phone && e.can_send_message !== 'AVAILABLE').map(entityHealth)
    : [];
  const usable =
    canSend(canSendMessage) &&
    (status === undefined || status === 'CONNECTED') &&
    (platformType === undefined || platformType === 'CLOUD_API') &&
    (canSendMessage !== undefined || status !== undefined || platformType !== undefined);

  let overallNote = '';
  if (phone && overallCanSendMessage !== undefined && overallCanSendMessage !== canSendMessage)
    overallNote = ` (overall ${overallCanSendMessage})`;
  if (!phone && entities.length > 0) overallNote = ' (overall: no PHONE_NUMBER entity)';
  const parts = [
    `can_send_message ${canSendMessage ?? '?'}${overallNote}`,
    `status ${status ?? '?'}`,
    `platform ${platformType ?? '?'}`,
    ...(isOnBizApp !== undefined ? [`is_on_biz_app ${isOnBizApp}`] : []),
    ...(errorCodes.length > 0 ? [`errors ${errorCodes.join(', ')}`] : []),
  ];
  const others = otherEntities.map(
    (e) =>
      `${e.type}${e.id ? ` ${e.id}` : ''} ${e.canSendMessage ?? '?'}` +
      (e.errorCodes.length > 0 ? ` (${e.errorCodes.join(', ')})` : ''),
  );
  const summary = parts.join(', ') + (others.length > 0 ? `; not held against it: ${others.join(', ')}` : '');
  return {
    id,
    usable,
    canSendMessage,
    overallCanSendMessage,
    status,
    platformType,
    isOnBizApp,
    errorCodes,
    otherEntities,
    summary,
  };
}
