import Router from '@koa/router';
import type { Context } from 'koa';
import type { Logger } from 'pino';
import { SIGNATURE_HEADER, verifySignature } from '../adapters/meta/signature';
import {
  WABA_OBJECT,
  WebhookPayloadError,
  parseWebhookBody,
  type ParsedWebhook,
} from '../adapters/meta/webhook-payload';
import { safeEqual } from '../util/compare';
import { withTimeout } from '../util/time';
import { parseJsonBody, readRawBody } from './body';
import { HttpError, badRequest, forbidden, requestIdOf, unauthorized, unavailable } from './errors';

/**
 * Meta's webhook endpoint. It acknowledges; it does not process: verify the signature over the
 * exact bytes, project the body (`parseWebhookBody`), hand the result to the sink, answer. The
 * answer is 200 only once the sink has accepted the delivery, so a delivery the sink could not
 * record is answered 503 and Meta redelivers it (at-least-once: the sink must be idempotent, see
 * `AccountUpdate.key`).
 */

/**
 * Receives every verified, parsed `whatsapp_business_account` delivery, in body order. Called
 * once per POST, including deliveries with no account updates and no statuses (inbound messages,
 * history…): it should return quickly for those. Must be idempotent: Meta redelivers on any
 * non-200 and sometimes without reason. A rejection (or not settling within `sinkTimeoutMs`)
 * answers 503 so Meta retries.
 */
export interface WebhookSink {
  accept(update: ParsedWebhook, delivery?: DeliveryBytes): Promise<SinkReport | void>;
}

/** The delivery as received, for a sink that keeps it (the outbox stores it for forwarding). */
export interface DeliveryBytes {
  /** The exact request body. */
  raw: Buffer;
  /** Meta's `X-Hub-Signature-256` header. */
  signature?: string;
}

/** What a sink may report about a delivery it accepted. */
export interface SinkReport {
  /** Events recorded but not applied because they cannot be understood (counted in `unusable`). */
  unusable: number;
}

/** Plain in-memory counters, on `/metrics` through `addWebhookCounters` (src/http/metrics.ts). Deliveries are counted as received, redeliveries included. */
export interface WebhookCounters {
  /** Webhook POSTs that reached the handler. */
  received: number;
  /** POSTs with a missing or wrong `X-Hub-Signature-256` (answered 401). */
  badSignature: number;
  /** POSTs over the body cap (413). */
  tooLarge: number;
  /** Verified POSTs whose body is not JSON (400). */
  invalidJson: number;
  /** Verified JSON that is not a webhook envelope (400). */
  invalidPayload: number;
  /** Verified envelopes whose `object` is not `whatsapp_business_account` (200, dropped). */
  nonWabaObjects: number;
  /** Deliveries the sink accepted (200). */
  accepted: number;
  /** Deliveries the sink failed or timed out on (503). */
  sinkFailures: number;
  /** Deliveries answered 503 at once because too many were in flight (load shedding). */
  shed: number;
  /** Changes or statuses left out because their shape was wrong. */
  skipped: number;
  /** Events the sink recorded but could not apply (e.g. a lifecycle event naming no usable WABA id). */
  unusable: number;
  /** Changes of WABA deliveries by `field`. */
  byField: Map<string, number>;
  /** `account_update` events by `event`. */
  byAccountUpdateEvent: Map<string, number>;
  /** Message statuses by `status`. */
  byStatus: Map<string, number>;
}

/** Distinct label values kept per labelled counter; further values are counted under `other`. */
const MAX_LABEL_VALUES = 50;

function incLabel(map: Map<string, number>, label: string, by = 1): void {
  const key = map.has(label) || map.size < MAX_LABEL_VALUES ? label : 'other';
  map.set(key, (map.get(key) ?? 0) + by);
}

/** New zeroed counters (one set per app; tests create their own). */
export function createCounters(): WebhookCounters {
  return {
    received: 0,
    badSignature: 0,
    tooLarge: 0,
    invalidJson: 0,
    invalidPayload: 0,
    nonWabaObjects: 0,
    accepted: 0,
    sinkFailures: 0,
    shed: 0,
    skipped: 0,
    unusable: 0,
    byField: new Map(),
    byAccountUpdateEvent: new Map(),
    byStatus: new Map(),
  };
}

export interface WebhookRouterOptions {
  /** Callback path, e.g. `/webhooks/meta`. */
  path: string;
  /** The verify token configured in the Meta app dashboard. */
  verifyToken: string;
  /** App secrets accepted for `X-Hub-Signature-256` (several during a rotation). At least one. */
  appSecrets: string[];
  /** Body cap in bytes (Meta sends up to 3 MB; `history` deliveries are the large ones). */
  maxBodyBytes: number;
  sink: WebhookSink;
  logger: Logger;
  counters: WebhookCounters;
  /** Answer 503 when the sink has not settled after this long (Meta redelivers; the sink keeps
   *  running and must tolerate the redelivery). Default 8 s, so every delivery is answered within
   *  10 s even under overload. 0 disables. */
  sinkTimeoutMs?: number;
}

const OK_BODY = '{"ok":true}';
const MAX_CHALLENGE_CHARS = 256;

/** A single query value; repeated parameters count as absent. */
function queryValue(ctx: Context, name: string): string | undefined {
  const v = ctx.query[name];
  return typeof v === 'string' ? v : undefined;
}

function wabaIdsOf(parsed: ParsedWebhook): string[] {
  const ids = new Set<string>();
  for (const u of parsed.accountUpdates) ids.add(u.wabaId);
  for (const s of parsed.statuses) ids.add(s.wabaId);
  return [...ids];
}

/** How many items of a delivery a log line names; the rest are only counted. */
const LOGGED_ITEMS = 5;
/** Longest text from Meta (ids, field and event names, reasons) copied into a log line. */
const LOGGED_TEXT_CHARS = 100;

const clip = (text: string | undefined, max = LOGGED_TEXT_CHARS): string | undefined =>
  text === undefined || text.length <= max ? text : `${text.slice(0, max)}…(${text.length} chars)`;

/** The failure as a bounded object (the pino serializer would copy e.g. a bulk write's every error). */
function errSummary(err: unknown): Record<string, unknown> {
  if (!(err instanceof Error)) return { message: clip(String(err), 500) };
  const code: unknown = (err as { code?: unknown }).code;
  return {
    type: err.name,
    message: clip(err.message, 500),
    ...(typeof code === 'string' || typeof code === 'number' ? { code } : {}),
    stack: clip(err.stack, 1500),
  };
}

/** A delivery's WABAs, events and statuses for a log line: counts and the first `LOGGED_ITEMS` only. */
function deliverySummary(parsed: ParsedWebhook): Record<string, unknown> {
  const wabaIds = wabaIdsOf(parsed);
  return {
    wabas: wabaIds.length,
    firstWabaIds: wabaIds.slice(0, LOGGED_ITEMS).map((id) => clip(id)),
    events: parsed.accountUpdates.length,
    firstEvents: parsed.accountUpdates
      .slice(0, LOGGED_ITEMS)
      .map((u) => ({ wabaId: clip(u.wabaId), event: clip(u.event), key: u.key })),
    statuses: parsed.statuses.length,
  };
}

/**
 * The webhook routes: `GET path` answers Meta's verification handshake, `POST path` receives
 * deliveries. Mount with `app.use(router.routes())` behind `errorMiddleware()`; nothing may read
 * the request body before it (no body parser on this path).
 */
export function createWebhookRouter(options: WebhookRouterOptions): Router {
  const { path, verifyToken, appSecrets, maxBodyBytes, sink, logger, counters } = options;
  const sinkTimeoutMs = options.sinkTimeoutMs ?? 8_000;
  if (appSecrets.length === 0) throw new Error('createWebhookRouter: at least one app secret is required');
  if (!verifyToken) throw new Error('createWebhookRouter: a verify token is required');
  const log = logger.child({ component: 'webhook' });
  const router = new Router();

  router.get(path, (ctx) => {
    const mode = queryValue(ctx, 'hub.mode');
    const token = queryValue(ctx, 'hub.verify_token');
    const challenge = queryValue(ctx, 'hub.challenge');
    if (mode !== 'subscribe' || token === undefined || !safeEqual(token, verifyToken)) {
      log.warn({ mode, requestId: requestIdOf(ctx) }, 'webhook verification refused');
      throw forbidden('verification_failed', 'hub.mode or hub.verify_token is wrong');
    }
    if (!challenge || challenge.length > MAX_CHALLENGE_CHARS) {
      throw badRequest('invalid_challenge', 'hub.challenge is missing or too long');
    }
    log.info('webhook verification answered');
    ctx.status = 200;
    ctx.type = 'text/plain';
    ctx.set('X-Content-Type-Options', 'nosniff');
    ctx.body = challenge;
  });

  router.post(path, async (ctx) => {
    counters.received++;
    let raw: Buffer;
    try {
      raw = await readRawBody(ctx, maxBodyBytes);
    } catch (err) {
      if (err instanceof HttpError && err.status === 413) {
        counters.tooLarge++;
        log.warn(
          { requestId: requestIdOf(ctx), contentLength: ctx.get('content-length') },
          'webhook body over the cap',
        );
      }
      throw err;
    }

    const signature = ctx.get(SIGNATURE_HEADER);
    if (!verifySignature(raw, signature || undefined, appSecrets)) {
      counters.badSignature++;
      log.warn({ requestId: requestIdOf(ctx), hasSignature: signature !== '' }, 'webhook signature refused');
      throw signature
        ? unauthorized('invalid_signature', 'X-Hub-Signature-256 does not match the body')
        : unauthorized('missing_signature', 'X-Hub-Signature-256 is required');
    }

    let json: unknown;
    try {
      json = parseJsonBody(raw);
    } catch (err) {
      counters.invalidJson++;
      log.warn({ requestId: requestIdOf(ctx), bytes: raw.length }, 'signed webhook body is not JSON');
      throw err;
    }

    let parsed: ParsedWebhook;
    try {
      parsed = parseWebhookBody(json);
    } catch (err) {
      if (!(err instanceof WebhookPayloadError)) throw err;
      counters.invalidPayload++;
      log.warn({ requestId: requestIdOf(ctx), reason: err.reason }, 'signed webhook body is not an envelope');
      throw badRequest('invalid_payload', err.reason);
    }

    if (parsed.object !== WABA_OBJECT) {
      counters.nonWabaObjects++;
      log.info({ requestId: requestIdOf(ctx), object: parsed.object }, 'webhook for another object ignored');
      ctx.type = 'application/json';
      ctx.body = OK_BODY;
      return;
    }

    for (const field in parsed.changesByField) incLabel(counters.byField, field, parsed.changesByField[field]);
    for (const u of parsed.accountUpdates) incLabel(counters.byAccountUpdateEvent, u.event);
    for (const s of parsed.statuses) incLabel(counters.byStatus, s.status);
    if (parsed.skipped.length > 0) {
      counters.skipped += parsed.skipped.length;
      log.warn(
        {
          requestId: requestIdOf(ctx),
          skipped: parsed.skipped.length,
          firstSkipped: parsed.skipped
            .slice(0, LOGGED_ITEMS)
            .map((k) => ({ ...k, field: clip(k.field), reason: clip(k.reason, 200) })),
        },
        'webhook changes left out',
      );
    }

    try {
      const report = await withTimeout(sink.accept(parsed, { raw, signature }), sinkTimeoutMs, 'webhook sink');
      if (report && report.unusable > 0) counters.unusable += report.unusable;
    } catch (err) {
      counters.sinkFailures++;
      log.error(
        { err: errSummary(err), requestId: requestIdOf(ctx), ...deliverySummary(parsed) },
        'webhook sink failed; answering 503 so Meta redelivers',
      );
      throw unavailable('sink_unavailable', 'the delivery could not be recorded; retry later');
    }

    counters.accepted++;
    for (const u of parsed.accountUpdates) {
      log.debug(
        { wabaId: clip(u.wabaId), event: clip(u.event), metaTime: u.metaTime, key: u.key, detail: u.detail },
        'account_update accepted',
      );
    }
    ctx.type = 'application/json';
    ctx.body = OK_BODY;
  });

  return router;
}
