import { createHash, randomBytes } from 'node:crypto';
import Router from '@koa/router';
import { z } from 'zod';
import type { Config } from '../config';
import type { Logger } from '../logger';
import { isDuplicateKey, outcomeOf, readMessage, type Collections, type StoredMessage } from '../adapters/store/db';
import { startSendWorkflow, type LauncherDeps } from '../lifecycle/launch';
import { queueMessage, recordMessage } from './admission';
import { gateOpen } from '../adapters/store/wabas';
import type { MessageContent, SendRequest } from '../../workflows/contracts';
import { bearerAuth } from '../http/auth';
import { badRequest, conflict, notFound, parseInput, readRawBody, unprocessable } from '../http/errors';

const MAX_SEND_BODY = 64 * 1024;

const sendSchema = z
  .object({
    phoneNumberId: z.string().regex(/^\d{1,32}$/, 'must be a Cloud API phone number id (digits)'),
    to: z.string().regex(/^\+?\d{5,20}$/, 'must be a phone number or WhatsApp id (digits, optional +)'),
    type: z.enum(['text', 'template']),
    text: z
      .object({ body: z.string().min(1).max(4096), preview_url: z.boolean().optional() })
      .strict()
      .optional(),
    template: z
      .object({
        name: z.string().min(1).max(512),
        language: z.object({ code: z.string().min(2).max(15) }),
        components: z.array(z.unknown()).optional(),
      })
      .optional(),
    expiresAt: z.iso.datetime({ offset: true }).optional(),
  })
  .strict()
  .superRefine((v, ctx) => {
    if (v.type === 'text' && !v.text)
      ctx.addIssue({ code: 'custom', path: ['text'], message: 'required when type is text' });
    if (v.type === 'template' && !v.template) {
      ctx.addIssue({ code: 'custom', path: ['template'], message: 'required when type is template' });
    }
    if (v.expiresAt && Date.parse(v.expiresAt) <= Date.now()) {
      ctx.addIssue({ code: 'custom', path: ['expiresAt'], message: 'is already in the past' });
    }
  });

type SendBody = z.output<typeof sendSchema>;

const contentOf = (b: SendBody): MessageContent =>
  b.type === 'text' ? { type: 'text', text: b.text! } : { type: 'template', template: b.template! };

/** A sortable, unguessable message id. */
export const newMessageId = (): string => `msg_${Date.now().toString(36)}${randomBytes(8).toString('hex')}`;

/** The public view of a message, with Meta's delivery statuses folded in. */
async function messageView(c: Collections, id: string, m: StoredMessage) {
  const { doc, settlement } = m;
  const outcome = outcomeOf(id, m);
  const delivery: Record<string, { at?: string; errors?: unknown[] }> = {};
  if (outcome.wamid) {
    const found = await Promise.all(
      ['sent', 'delivered', 'read', 'failed'].map((s) => c.messageStatuses.findOne({ _id: `${outcome.wamid}:${s}` })),
    );
    for (const s of found) {
      if (!s) continue;
      delivery[s.status] = {
        ...(s.timestamp ? { at: new Date(s.timestamp * 1000).toISOString() } : {}),
        ...(s.errors ? { errors: s.errors } : {}),
      };
    }
  }
  const latest = ['failed', 'read', 'delivered', 'sent'].find((s) => delivery[s]);
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
  };
}

/**
 * The send API: `POST /v1/messages` (202, idempotent with `Idempotency-Key`) and
 * `GET /v1/messages/:id`. Keys from SEND_API_KEYS.
 */
export function createMessagesRouter(deps: {
  c: Collections;
  launcher: LauncherDeps;
  config: Config;
  logger: Logger;
}): Router {
  const { c, launcher, config } = deps;
  const router = new Router({ prefix: '/v1/messages' });
  router.use(bearerAuth(config.sendApiKeys, 'send API'));

  router.post('/', async (ctx) => {
    const raw = await readRawBody(ctx, MAX_SEND_BODY);
    let json: unknown;
    try {
      json = JSON.parse(raw.toString('utf8'));
    } catch {
      throw badRequest('invalid_json', 'the body is not valid JSON');
    }
    const body = parseInput(sendSchema, json);
    const idemHeader = ctx.get('idempotency-key');
    if (idemHeader && !/^[\x21-\x7e]{1,255}$/.test(idemHeader)) {
      throw badRequest('invalid_idempotency_key', 'Idempotency-Key must be 1–255 visible ASCII characters');
    }

    const number = await c.phoneNumbers.findOne({ _id: body.phoneNumberId });
    if (!number) {
      throw unprocessable(
        'unknown_phone_number',
        `phone number ${body.phoneNumberId} is not registered; an operator registers it with PUT /v1/phone-numbers/${body.phoneNumberId}`,
      );
    }
    const waba = await c.wabas.findOne({ _id: number.wabaId }, { projection: { state: 1, reason: 1 } });
    if (waba?.state === 'partner_removed') {
      throw conflict(
        'partner_removed',
        `WABA ${number.wabaId} is no longer shared with us (PARTNER_REMOVED); sends are refused`,
        { wabaId: number.wabaId, reason: waba.reason },
      );
    }
    if (waba?.state === 'reconnect_abandoned' && config.lifecycle.onAbandon === 'fail') {
      throw conflict(
        'reconnect_abandoned',
        `WABA ${number.wabaId} did not reconnect and was abandoned; sends are refused until it reconnects`,
        { wabaId: number.wabaId },
      );
    }

    let messageId = newMessageId();
    if (idemHeader) {
      const requestHash = createHash('sha256').update(raw).digest('hex');
      const idemId = `${String(ctx.state.apiKeyId)}:${idemHeader}`;
      try {
        await c.idempotency.insertOne({ _id: idemId, messageId, requestHash, createdAt: new Date().toISOString() });
      } catch (err) {
        if (!isDuplicateKey(err)) throw err;
        const first = await c.idempotency.findOne({ _id: idemId });
        if (!first) throw err;
        if (first.requestHash !== requestHash) {
          throw unprocessable(
            'idempotency_key_reused',
            'this Idempotency-Key was already used with a different request body',
            { messageId: first.messageId },
          );
        }
        messageId = first.messageId;
        ctx.set('Idempotent-Replayed', 'true');
      }
    }

    const existing = await c.messages.findOne({ _id: messageId }, { projection: { acceptedAt: 1 } });
    const acceptedAt = existing?.acceptedAt ?? new Date().toISOString();
    const content = contentOf(body);
    const req: SendRequest = {
      messageId,
      phoneNumberId: body.phoneNumberId,
      to: body.to,
      acceptedAt,
      ...(body.expiresAt ? { expiresAt: new Date(body.expiresAt).toISOString() } : {}),
      ...content,
    };
    if (!existing) {
      // While the gate is closed the message joins the queue now, so queue order is the order in
      // which this API accepted the messages (the send workflow then just waits for the drain).
      const closed = !gateOpen(waba?.state);
      await recordMessage(c, req, number.wabaId, closed ? 'queued' : 'accepted');
      if (closed) await queueMessage(deps, req, number.wabaId, content, true);
    }
    // Idempotent: a replay (or a retry after a failure here) finds the run already started.
    await startSendWorkflow(launcher, req, { queuedPollMs: config.sending.queuedPollMs }, number.wabaId);
    ctx.status = 202;
    ctx.body = { id: messageId, status: 'accepted' };
  });

  router.get('/:id', async (ctx) => {
    const id = ctx.params.id!;
    const m = await readMessage(c, id);
    if (!m) throw notFound('unknown_message', `no message ${id}`);
    ctx.body = await messageView(c, id, m);
  });

  return router;
}
