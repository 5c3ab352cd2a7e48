import { createHash, randomBytes } from 'node:crypto';
import Router from '@koa/router';
import { z } from 'zod';
import type { Middleware } from 'koa';
import type { Config, SendKey } from '../config';
import type { Logger } from '../logger';
import type { Collections } from '../adapters/store/db';
import { statusesOf } from './statuses.store';
import { acceptedAtOf, claimIdempotencyKey, outcomeOf, readMessage, type StoredMessage } from './messages.store';
import { bearerAuth } from '../http/auth';
import { readJsonBody } from '../http/body';
import { badRequest, conflict, forbidden, notFound, parseInput, unprocessable } from '../http/errors';
import type { LaunchDeps } from '../launch-deps';
import { BSUID_PATTERN, type SendRequest } from '../contracts';
import { contentOf, type AdmissionService } from './admission';
import { customerOf } from './customer';
import { startSendWorkflow } from './launch';

const MAX_SEND_BODY = 64 * 1024;

/** The ids the documented examples use (the contract test registers this number for this WABA). */
export const EXAMPLE_IDS = { phoneNumberId: '106540352242922', wabaId: '102290129340398' } as const;

const storableScalar = z.union([z.string(), z.number(), z.boolean(), z.null()]);
/** Keys of Meta's component objects (`type`, `sub_type`, `parameters`, `fallback_value`, …). */
const componentKey = z.string().regex(/^[A-Za-z0-9_]{1,64}$/, "must be a key of Meta's shape (letters, digits, _)");

/**
 * A JSON object of at most `depth` levels the store can hold: keys of Meta's shape (MongoDB
 * refuses `.`, `$` and NUL in keys), no array directly inside an array (FerretDB: "nested arrays
 * are not supported"), bounded nesting. Template components are such objects.
 */
function storableObject(depth: number): z.ZodType<Record<string, unknown>> {
  const child = depth > 1 ? storableObject(depth - 1) : undefined;
  const item = child ? z.union([storableScalar, child]) : storableScalar;
  const object = z.record(
    componentKey,
    child ? z.union([storableScalar, child, z.array(item)]) : z.union([storableScalar, z.array(item)]),
  );
  // Named, so the OpenAPI document defines each level once (`#/components/schemas/StorableObjectN`).
  return object.meta({ id: `StorableObject${depth}` });
}

/** A template message's `template` object (also a free-form message's `fallbackTemplate`). */
const templateSchema = z.object({
  name: z.string().min(1).max(512),
  language: z.object({ code: z.string().min(2).max(15) }),
  components: z.array(storableObject(5)).max(50).optional(),
});

/** The body of `POST /v1/messages` (validates requests; `src/http/openapi.ts` documents it). */
export const sendSchema = z
  .object({
    phoneNumberId: z.string().regex(/^[0-9]{1,32}$/, 'must be a Cloud API phone number id (digits)'),
    to: z
      .string()
      .regex(/^\+?[0-9]{5,20}$/, 'must be a phone number or WhatsApp id (digits, optional +)')
      .optional()
      .describe("the customer's phone number or WhatsApp id; wins over `recipient` when both are given, as at Meta"),
    recipient: z
      .string()
      .regex(BSUID_PATTERN, 'must be a business-scoped user id, e.g. US.13491208655302741918')
      .optional()
      .describe(
        "the customer's business-scoped user id (BSUID), instead of or beside `to`; sent to Meta as `recipient`",
      ),
    type: z.enum(['text', 'template']),
    text: z
      .object({ body: z.string().min(1).max(4096), preview_url: z.boolean().optional() })
      .strict()
      .optional(),
    template: templateSchema.optional(),
    fallbackTemplate: templateSchema
      .optional()
      .describe(
        "Sent instead of a free-form message when the customer service window is known to be closed (the customer's last message is over 24 h old, or Meta answered 131047); the message then shows `sentAs: fallback_template`. Without it such a message fails with reason `service_window_closed`. Ignored for templates (never held back).",
      ),
    expiresAt: z.iso.datetime({ offset: true }).optional(),
  })
  .strict()
  .superRefine((v, ctx) => {
    if (v.to === undefined && v.recipient === undefined)
      ctx.addIssue({ code: 'custom', path: ['to'], message: 'to or recipient is required' });
    if (v.type === 'text' && !v.text)
      ctx.addIssue({ code: 'custom', path: ['text'], message: 'required when type is text' });
    if (v.type === 'template' && !v.template) {
      ctx.addIssue({ code: 'custom', path: ['template'], message: 'required when type is template' });
    }
    if (v.expiresAt && Date.parse(v.expiresAt) <= Date.now()) {
      ctx.addIssue({ code: 'custom', path: ['expiresAt'], message: 'is already in the past' });
    }
  })
  .meta({
    // The refinements above, for the JSON Schema (zod refinements do not reach it).
    allOf: [
      {
        anyOf: [
          { properties: { type: { const: 'text' } }, required: ['text'] },
          { properties: { type: { const: 'template' } }, required: ['template'] },
        ],
      },
      { anyOf: [{ required: ['to'] }, { required: ['recipient'] }] },
    ],
    examples: [
      { phoneNumberId: EXAMPLE_IDS.phoneNumberId, to: '15551234567', type: 'text', text: { body: 'hi' } },
      {
        phoneNumberId: EXAMPLE_IDS.phoneNumberId,
        to: '15551234567',
        type: 'template',
        template: { name: 'hello_world', language: { code: 'en_US' } },
      },
      {
        phoneNumberId: EXAMPLE_IDS.phoneNumberId,
        recipient: 'US.13491208655302741918',
        type: 'text',
        text: { body: 'hi' },
      },
    ],
  });

/** Meta's error on a failed send, as recorded. */
const metaErrorSchema = z.object({
  code: z.number().int(),
  subcode: z.number().int().optional(),
  message: z.string(),
  details: z.string().optional(),
  fbtraceId: z.string().optional(),
  httpStatus: z.number().int().optional(),
});

const deliveryEntrySchema = z.object({
  at: z.string().optional().describe('when Meta says it happened (ISO)'),
  errors: z.array(z.unknown()).optional().describe("Meta's errors on a failed status"),
});

/** The 202 answer of `POST /v1/messages`. */
export const acceptedSchema = z.object({ id: z.string(), status: z.literal('accepted') });

/** `GET /v1/messages/:id`: the public view of a message (built by `messageView`). */
export const messageViewSchema = z.object({
  id: z.string(),
  status: z
    .enum(['accepted', 'queued', 'sending', 'in_doubt', 'sent', 'failed', 'expired', 'cancelled'])
    .describe('`in_doubt`: the answer to a send was lost; settled by a status webhook or by IN_DOUBT_POLICY'),
  wamid: z.string().optional().describe("Meta's message id, once sent"),
  reason: z
    .string()
    .optional()
    .describe(
      'why it failed, expired or was cancelled (`service_window_closed`: a free-form message outside the window)',
    ),
  error: metaErrorSchema.optional(),
  sentAs: z
    .literal('fallback_template')
    .optional()
    .describe("the customer service window was closed: the send's fallbackTemplate went instead of the message"),
  wabaId: z.string().optional(),
  phoneNumberId: z.string().optional(),
  to: z.string().optional(),
  type: z.enum(['text', 'template']).optional(),
  acceptedAt: z.string().optional(),
  queuedAt: z.string().optional(),
  settledAt: z.string().optional(),
  expiresAt: z.string().optional(),
  deliveryStatus: z.enum(['sent', 'delivered', 'read', 'failed']).optional().describe("the latest of Meta's statuses"),
  delivery: z
    .object({
      sent: deliveryEntrySchema.optional(),
      delivered: deliveryEntrySchema.optional(),
      read: deliveryEntrySchema.optional(),
      failed: deliveryEntrySchema.optional(),
    })
    .describe("Meta's status webhooks by status"),
  attempts: z.number().int().min(0),
  updatedAt: z.string(),
  history: z
    .array(
      z.object({
        status: z.enum(['sent', 'failed', 'queued', 'expired', 'cancelled']),
        at: z.string(),
        wamid: z.string().optional(),
        by: z.literal('meta').optional().describe('Meta failed it after accepting it (a failed status)'),
        code: z.number().int().optional().describe("Meta's error code"),
        reason: z.string().optional(),
      }),
    )
    .optional()
    .describe(
      'Only for a message Meta failed after accepting it (its account could not send), queued again once: sent, failed by Meta, queued, then its second outcome. `wamid`, `status` and `delivery` then describe the second send.',
    ),
});
export type MessageView = z.output<typeof messageViewSchema>;
type DeliveryStatus = keyof MessageView['delivery'];
const DELIVERY_STATUSES_NEWEST_FIRST = ['failed', 'read', 'delivered', 'sent'] as const;

/** A sortable, unguessable message id. */
export const newMessageId = (): string => `msg_${Date.now().toString(36)}${randomBytes(8).toString('hex')}`;

/** The public view of a message, with Meta's delivery statuses folded in. */
async function messageView(c: Collections, id: string, m: StoredMessage): Promise<MessageView> {
  const { doc } = m;
  // A message queued again after a late failure shows its second send (its first is in `history`).
  const settlement = m.resend ? m.resend.settlement : m.settlement;
  const outcome = outcomeOf(id, m);
  const delivery: MessageView['delivery'] = {};
  if (outcome.wamid) {
    for (const s of await statusesOf(c, outcome.wamid)) {
      // statusesOf reads exactly these four statuses.
      delivery[s.status as DeliveryStatus] = {
        ...(s.timestamp ? { at: new Date(s.timestamp * 1000).toISOString() } : {}),
        ...(s.errors ? { errors: s.errors } : {}),
      };
    }
  }
  const latest = DELIVERY_STATUSES_NEWEST_FIRST.find((s) => delivery[s]);
  const { messageId: _, at, ...rest } = outcome;
  return {
    id,
    ...rest,
    ...(doc
      ? {
          wabaId: doc.wabaId,
          phoneNumberId: doc.phoneNumberId,
          to: doc.to,
          type: doc.content.type,
          acceptedAt: doc.acceptedAt,
        }
      : {}),
    ...(doc?.queuedAt ? { queuedAt: doc.queuedAt } : {}),
    ...(settlement ? { settledAt: settlement.at } : {}),
    ...(doc?.expiresAt ? { expiresAt: doc.expiresAt } : {}),
    ...(latest ? { deliveryStatus: latest } : {}),
    delivery,
    attempts: settlement?.attempts ?? doc?.attempts ?? 0,
    updatedAt: at,
    ...(m.resend ? { history: historyOf(m) } : {}),
  };
}

/** A re-queued message's steps: first send, Meta's late failure, queued again, second outcome. */
function historyOf(m: StoredMessage): NonNullable<MessageView['history']> {
  const first = m.settlement;
  const failure = m.resend?.failure;
  const second = m.resend?.settlement;
  return [
    ...(first ? [{ status: 'sent' as const, at: first.at, ...(first.wamid ? { wamid: first.wamid } : {}) }] : []),
    ...(failure
      ? [
          {
            status: 'failed' as const,
            at: failure.failedAt,
            wamid: failure.wamid,
            by: 'meta' as const,
            code: failure.code,
          },
          { status: 'queued' as const, at: failure.requeuedAt },
        ]
      : []),
    ...(second
      ? [
          {
            status: second.status,
            at: second.at,
            ...(second.wamid ? { wamid: second.wamid } : {}),
            ...(second.reason ? { reason: second.reason } : {}),
            ...(second.error ? { code: second.error.code } : {}),
          },
        ]
      : []),
  ];
}

/** Whether a send key may use a WABA (a key listing no WABAs may use all). */
export const keyMayUse = (key: SendKey | undefined, wabaId: string): boolean =>
  key !== undefined && (key.wabas === undefined || key.wabas.includes(wabaId));

/**
 * The send API: `POST /v1/messages` (202, idempotent with `Idempotency-Key`) and
 * `GET /v1/messages/:id`. Keys from SEND_API_KEYS, each scoped to its WABAs: a number of another
 * WABA is refused 403 `forbidden_waba`; a message of another WABA answers 404 `unknown_message`,
 * exactly like a message that does not exist (a key learns nothing about other tenants).
 */
export function createMessagesRouter(deps: {
  c: Collections;
  launch: LaunchDeps;
  admission: AdmissionService;
  config: Config;
  logger: Logger;
  /** The per-key rate limit (shared with the ops API); none when absent. */
  rateLimit?: Middleware;
}): Router {
  const { c, launch, admission, config } = deps;
  const router = new Router({ prefix: '/v1/messages' });
  router.use(
    bearerAuth(
      config.sendApiKeys.map((k) => k.key),
      'send API',
    ),
  );
  if (deps.rateLimit) router.use(deps.rateLimit);
  const keyOf = (ctx: { state: { apiKeyIndex?: unknown } }): SendKey | undefined =>
    config.sendApiKeys[Number(ctx.state.apiKeyIndex)];

  router.post('/', async (ctx) => {
    const { raw, json } = await readJsonBody(ctx, MAX_SEND_BODY);
    const body = parseInput(sendSchema, json);
    const idemHeader = ctx.get('idempotency-key');
    // Present but empty counts as invalid, not as absent: the client meant to be idempotent.
    if (ctx.headers['idempotency-key'] !== undefined && !/^[\x21-\x7e]{1,255}$/.test(idemHeader)) {
      throw badRequest('invalid_idempotency_key', 'Idempotency-Key must be 1–255 visible ASCII characters');
    }

    const number = await admission.lookupNumber(body.phoneNumberId);
    if (!number) {
      throw unprocessable(
        'unknown_phone_number',
        `phone number ${body.phoneNumberId} is not registered; an operator registers it with PUT /v1/phone-numbers/${body.phoneNumberId}`,
      );
    }
    // For the request's span (src/http/tracing.ts).
    ctx.state.wabaId = number.wabaId;
    if (!keyMayUse(keyOf(ctx), number.wabaId)) {
      throw forbidden('forbidden_waba', `this API key may not send from phone number ${body.phoneNumberId}`);
    }
    let messageId = newMessageId();
    // A fresh id names no message yet; only an Idempotency-Key's earlier claim may name a recorded one.
    let replay = false;
    if (idemHeader) {
      const requestHash = createHash('sha256').update(raw).digest('hex');
      const first = await claimIdempotencyKey(c, {
        _id: `${String(ctx.state.apiKeyId)}:${idemHeader}`,
        messageId,
        requestHash,
        createdAt: new Date().toISOString(),
      });
      if (first) {
        if (first.requestHash !== requestHash) {
          throw unprocessable(
            'idempotency_key_reused',
            'this Idempotency-Key was already used with a different request body',
            { messageId: first.messageId },
          );
        }
        messageId = first.messageId;
        replay = true;
        ctx.set('Idempotent-Replayed', 'true');
      }
    }

    const existingAcceptedAt = replay ? await acceptedAtOf(c, messageId) : undefined;
    let req: SendRequest = {
      messageId,
      phoneNumberId: body.phoneNumberId,
      to: await customerOf(c, body),
      acceptedAt: existingAcceptedAt ?? new Date().toISOString(),
      ...(body.expiresAt ? { expiresAt: new Date(body.expiresAt).toISOString() } : {}),
      ...(body.fallbackTemplate ? { fallbackTemplate: body.fallbackTemplate } : {}),
      ...contentOf(body),
    };
    let queued = false;
    if (!existingAcceptedAt) {
      // Only a new message meets the gate: a replay of an accepted one gets the first answer,
      // whatever the gate says now.
      const readAt = Date.now();
      const verdict = await admission.verdictFor(number.wabaId);
      if (verdict.kind === 'refuse') throw conflict(verdict.code, verdict.message, { wabaId: number.wabaId });
      // The run's first `admit` acts on this verdict while it is fresh (`reusesApiVerdict`). Only
      // the request that recorded the message acts on its verdict: a concurrent request with the
      // same Idempotency-Key that lost the insert may have read the gate on the other side of a
      // closure, and a run started as `queued` for a message recorded as accepted would wait for
      // a settlement nobody makes; its run admits the message as recorded instead.
      if (await admission.acceptNew(req, number.wabaId, verdict)) {
        req = { ...req, recorded: true, ...(verdict.kind === 'send' ? { gateOpenAt: readAt } : {}) };
        queued = verdict.kind === 'queue';
      }
    }
    // Idempotent: a replay (or a retry after a failure here) finds the run already started. A
    // message queued here is not admitted again by its run: it reads the outcome and waits.
    await startSendWorkflow(launch, req, queued ? { queued } : {}, number.wabaId);
    ctx.status = 202;
    ctx.body = { id: messageId, status: 'accepted' };
  });

  router.get('/:id', async (ctx) => {
    const id = ctx.params.id!;
    const m = await readMessage(c, id);
    // A settlement without its message document names no WABA: only an unscoped key may read it.
    const visible = m && (m.doc ? keyMayUse(keyOf(ctx), m.doc.wabaId) : keyOf(ctx)?.wabas === undefined);
    if (!m || !visible) throw notFound('unknown_message', `no message ${id}`);
    ctx.body = await messageView(c, id, m);
  });

  return router;
}
