/**
 * The one reader of Meta's phone-number node for the send gate's probe
 * (`GET /<version>/<PHONE_NUMBER_ID>?fields=health_status,status,platform_type`). Meta documents:
 * - `health_status.can_send_message`: `AVAILABLE`, `LIMITED` (can send, with limits) or `BLOCKED`,
 *   the worst of the number's, the WABA's, the business's and the app's entities; `entities[].errors`
 *   say why one is blocked;
 * - `status`: the number's connection state (`CONNECTED`; `DISCONNECTED` while a coexistence
 *   number's Cloud API companion is offboarded; `PENDING`, `FLAGGED`, `RESTRICTED`, `BANNED`, ...);
 * - `platform_type`: `CLOUD_API` when the number is on the Cloud API (`NOT_APPLICABLE` while
 *   offboarded, `ON_PREMISE` for the old API).
 * A number is usable when it can send (`AVAILABLE` or `LIMITED`), is `CONNECTED`, and is on the
 * Cloud API; a field Meta did not answer does not count against it.
 */

/** The fields the probe asks for. */
export const PROBE_FIELDS = 'health_status,status,platform_type';

/** What the probe read from one phone-number node. */
export interface PhoneHealth {
  id: string;
  usable: boolean;
  canSendMessage?: string;
  status?: string;
  platformType?: string;
  /** Meta's error codes on blocked entities. */
  errorCodes: number[];
  /** Plain words, e.g. `can_send_message AVAILABLE, status CONNECTED, platform CLOUD_API`. */
  summary: string;
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const text = (v: unknown): string | undefined => (typeof v === 'string' && v.length > 0 ? v : undefined);

/** Reads a phone-number node; undefined when the answer is not one (no `id`). */
export function readPhoneHealth(json: unknown): PhoneHealth | undefined {
  if (!isRecord(json) || !text(json.id)) return undefined;
  const health = isRecord(json.health_status) ? json.health_status : undefined;
  const canSendMessage = text(health?.can_send_message);
  const status = text(json.status);
  const platformType = text(json.platform_type);
  const errorCodes: number[] = [];
  const entities = Array.isArray(health?.entities) ? health.entities : [];
  for (const entity of entities) {
    if (!isRecord(entity) || !Array.isArray(entity.errors)) continue;
    for (const e of entity.errors) if (isRecord(e) && typeof e.error_code === 'number') errorCodes.push(e.error_code);
  }
  const usable =
    (canSendMessage === undefined || canSendMessage === 'AVAILABLE' || canSendMessage === 'LIMITED') &&
    (status === undefined || status === 'CONNECTED') &&
    (platformType === undefined || platformType === 'CLOUD_API') &&
    (canSendMessage !== undefined || status !== undefined || platformType !== undefined);
  const parts = [
    `can_send_message ${canSendMessage ?? '?'}`,
    `status ${status ?? '?'}`,
    `platform ${platformType ?? '?'}`,
    ...(errorCodes.length > 0 ? [`errors ${errorCodes.join(', ')}`] : []),
  ];
  return { id: json.id as string, usable, canSendMessage, status, platformType, errorCodes, summary: parts.join(', ') };
}
