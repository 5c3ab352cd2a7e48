import Router from '@koa/router';
import type { Context, Middleware } from 'koa';
import { z } from 'zod';
import type { Config } from '../config';
import type { Logger } from '../logger';
import type { Collections } from '../adapters/store/db';
import { listPhoneNumbers, registerPhoneNumber, wabaHasNumbers } from '../lifecycle/phone-numbers.store';
import { countQueued } from '../sending/queue.store';
import { findWaba, freshWaba, listWabas, type WabaSnapshot } from '../lifecycle/wabas.store';
import { bearerAuth } from '../http/auth';
import { readJsonBody } from '../http/body';
import { badRequest, conflict, notFound, parseInput, unavailable } from '../http/errors';
import { EXAMPLE_IDS } from '../sending/api';
import { tokenPauseFor } from '../lifecycle/credentials';
import {
  ActionNotAcceptedError,
  ActionRefusedError,
  OPERATOR_ACTION_WAIT_MS,
  applyOperatorAction,
} from '../lifecycle/launch';
import type { LaunchDeps } from '../launch-deps';
import { GATE_CAUSES, credentialsWorkflowId, wabaWorkflowId, type ReopenCause, type WabaState } from '../contracts';

export const WABA_STATES = ['connected', 'offboarded', 'draining', 'reconnect_abandoned', 'partner_removed'] as const;
const REOPEN_CAUSES = [
  'reconnected',
  'reconnected_by_probe',
  'probe_after_grace',
  'credentials_restored',
  'operator',
  'partner_added',
  'reinstated',
] as const satisfies readonly ReopenCause[];
const MAX_OPS_BODY = 16 * 1024;

/** The body of `PUT /v1/phone-numbers/:phoneNumberId`. */
export const phoneNumberSchema = z
  .object({
    wabaId: z.string().regex(/^[0-9]{1,32}$/, 'must be a WABA id (digits)'),
    mps: z.number().int().min(1).max(1000).optional(),
    coexistence: z.boolean().optional(),
  })
  .strict()
  .meta({
    // The handler's `invalid_mps` rule, for the JSON Schema: coexistence numbers take at most 20.
    anyOf: [{ properties: { coexistence: { const: false } } }, { properties: { mps: { maximum: 20 } } }],
    examples: [{ wabaId: EXAMPLE_IDS.wabaId, coexistence: true }],
  });

/** The body of `POST /v1/wabas/:wabaId/actions`. */
export const actionSchema = z
  .object({
    action: z
      .enum(['force_resume', 'force_abandon', 'reinstate'])
      .describe('reinstate: a partner-removed WABA is shared with us again (re-onboarded)'),
    reason: z.string().trim().min(3, 'say why, in a few words').max(500),
    operator: z.string().max(100).optional(),
  })
  .strict()
  .meta({ examples: [{ action: 'force_resume', reason: 'Meta support confirmed the reconnection', operator: 'ana' }] });

/** `GET /v1/wabas/:wabaId` (and each item of `GET /v1/wabas`), built by `wabaView`. */
export const wabaViewSchema = z.object({
  wabaId: z.string(),
  state: z.enum(WABA_STATES),
  escalationLevel: z.number().int().min(0),
  queued: z.number().int().min(0).describe('messages waiting in the queue'),
  since: z.string().describe('when the WABA entered this state (ISO)'),
  reason: z.string().optional(),
  gateCause: z
    .enum(GATE_CAUSES)
    .optional()
    .describe('why the send gate is closed (absent while open); see `closure` for the evidence'),
  closure: z
    .object({
      cause: z.enum(GATE_CAUSES),
      at: z.string().describe('when the gate closed for this cause (ISO)'),
      metaTime: z.number().optional().describe("Meta's entry[].time of the webhook (Unix s)"),
      causeTime: z.string().optional().describe('when the send or status behind it happened (ISO)'),
      code: z.number().int().optional().describe("Meta's error code"),
      messageId: z.string().optional(),
      wamid: z.string().optional(),
      detail: z.string().optional(),
    })
    .optional(),
  lastReopen: z
    .object({
      cause: z.enum(REOPEN_CAUSES),
      at: z.string(),
      closedBy: z.enum(GATE_CAUSES).optional(),
      detail: z.string().optional(),
    })
    .optional(),
  disconnectionInfo: z
    .object({ reason: z.string().optional(), initiatedBy: z.string().optional() })
    .optional()
    .describe("Meta's disconnection_info of the last PARTNER_REMOVED"),
  lastEvents: z
    .array(
      z.object({
        type: z.string().describe('lifecycle event, operator action or ESCALATED'),
        at: z.string(),
        metaTime: z.number().optional(),
        outcome: z.string().describe('applied, duplicate, stale, ignored, …'),
        detail: z.string().optional(),
      }),
    )
    .max(10),
  updatedAt: z.string(),
  workflowId: z.string().describe('the lifecycle workflow in Temporal'),
  tokenPause: z
    .object({
      source: z.string().describe('where the token comes from: GRAPH_API_TOKEN or GRAPH_API_TOKENS_BY_WABA[<waba>]'),
      since: z.string(),
      checkedAt: z.string().optional().describe("the credentials workflow's last probe"),
      detail: z.string(),
      workflowId: z.string().describe('the credentials workflow in Temporal'),
    })
    .optional()
    .describe(
      "Only on GET /v1/wabas/{wabaId}, while Meta refuses the WABA's token: sending is paused for every WABA using it (messages queue); a probe that succeeds resumes it. Not a gate closure.",
    ),
});
export type WabaView = z.output<typeof wabaViewSchema>;

/** `GET /v1/wabas`. */
export const wabaListSchema = z.object({ wabas: z.array(wabaViewSchema) });

/** The answer of an applied operator action. */
export const actionResultSchema = z.object({
  wabaId: z.string(),
  accepted: z.literal(true),
  state: z.enum(WABA_STATES),
});

/** `202`: the workflow accepted the action but had not applied it within the wait. */
export const actionPendingSchema = z.object({
  wabaId: z.string(),
  accepted: z.literal(true),
  applied: z.literal(false),
  message: z.string(),
});

/** One registered phone number (`PUT /v1/phone-numbers/:id` answers it; the list holds them). */
export const phoneNumberViewSchema = z.object({
  phoneNumberId: z.string(),
  wabaId: z.string(),
  mps: z.number().int().min(1).describe('send cap, messages per second'),
  coexistence: z.boolean(),
  createdAt: z.string(),
  updatedAt: z.string(),
});

/** `GET /v1/phone-numbers`. */
export const phoneNumberListSchema = z.object({ phoneNumbers: z.array(phoneNumberViewSchema) });

const readJson = async (ctx: Context): Promise<unknown> => (await readJsonBody(ctx, MAX_OPS_BODY)).json;

function wabaView(doc: WabaSnapshot, queued: number): WabaView {
  return {
    wabaId: doc.wabaId,
    state: doc.state,
    escalationLevel: doc.escalationLevel,
    queued,
    since: doc.since,
    ...(doc.reason ? { reason: doc.reason } : {}),
    ...(doc.closure
      ? {
          gateCause: doc.closure.cause,
          closure: {
            cause: doc.closure.cause,
            at: doc.closure.at,
            ...(doc.closure.metaTime !== undefined ? { metaTime: doc.closure.metaTime } : {}),
            ...(doc.closure.causeTime !== undefined
              ? { causeTime: new Date(doc.closure.causeTime).toISOString() }
              : {}),
            ...(doc.closure.code !== undefined ? { code: doc.closure.code } : {}),
            ...(doc.closure.messageId ? { messageId: doc.closure.messageId } : {}),
            ...(doc.closure.wamid ? { wamid: doc.closure.wamid } : {}),
            ...(doc.closure.detail ? { detail: doc.closure.detail } : {}),
          },
        }
      : {}),
    ...(doc.lastReopen ? { lastReopen: doc.lastReopen } : {}),
    ...(doc.disconnectionInfo ? { disconnectionInfo: doc.disconnectionInfo } : {}),
    lastEvents: doc.events.slice(-10),
    updatedAt: doc.updatedAt,
    workflowId: wabaWorkflowId(doc.wabaId),
  };
}

/**
 * The ops API (keys from OPS_API_KEYS): WABA states, operator actions on the lifecycle workflow,
 * and the phone-number registry.
 */
export function createOpsRouter(deps: {
  c: Collections;
  launch: LaunchDeps;
  config: Config;
  logger: Logger;
  /** The per-key rate limit (shared with the send API); none when absent. */
  rateLimit?: Middleware;
}): Router {
  const { c, launch, config, logger } = deps;
  const router = new Router({ prefix: '/v1' });
  router.use(bearerAuth(config.opsApiKeys, 'ops API'));
  if (deps.rateLimit) router.use(deps.rateLimit);

  router.get('/wabas', async (ctx) => {
    const state = ctx.query.state;
    if (state !== undefined && (typeof state !== 'string' || !(WABA_STATES as readonly string[]).includes(state))) {
      throw badRequest('invalid_state', `state must be one of ${WABA_STATES.join(', ')}`);
    }
    const docs = await listWabas(c, state as WabaState | undefined);
    const queued = await Promise.all(docs.map((d) => countQueued(c, d.wabaId)));
    ctx.body = { wabas: docs.map((d, i) => wabaView(d, queued[i]!)) };
  });

  /** The WABA's token pause, while in force (src/lifecycle/credentials.ts). */
  async function tokenPauseOf(wabaId: string): Promise<Pick<WabaView, 'tokenPause'>> {
    const paused = await tokenPauseFor(c, config.graph, wabaId, config.lifecycle.probeIntervalMs);
    if (!paused) return {};
    const { source, pause } = paused;
    return {
      tokenPause: {
        source,
        since: pause.since,
        ...(pause.checkedAt ? { checkedAt: pause.checkedAt } : {}),
        detail: pause.detail,
        workflowId: credentialsWorkflowId(config.temporal.taskQueue, source),
      },
    };
  }

  router.get('/wabas/:wabaId', async (ctx) => {
    const wabaId = ctx.params.wabaId!;
    const doc = await findWaba(c, wabaId);
    if (doc) {
      const [queued, paused] = await Promise.all([countQueued(c, wabaId), tokenPauseOf(wabaId)]);
      ctx.body = { ...wabaView(doc, queued), ...paused };
      return;
    }
    if (!(await wabaHasNumbers(c, wabaId))) {
      throw notFound('unknown_waba', `WABA ${wabaId} has no registered number and no recorded event`);
    }
    const [queued, paused] = await Promise.all([countQueued(c, wabaId), tokenPauseOf(wabaId)]);
    ctx.body = { ...wabaView(freshWaba(wabaId, new Date().toISOString()), queued), ...paused };
  });

  router.post('/wabas/:wabaId/actions', async (ctx) => {
    const wabaId = ctx.params.wabaId!;
    const action = parseInput(actionSchema, await readJson(ctx));
    try {
      const answer = await applyOperatorAction(launch, wabaId, action);
      if (answer.kind === 'applied') {
        logger.warn({ wabaId, ...action }, 'operator action applied');
        ctx.body = { wabaId, ...answer.result };
        return;
      }
      logger.warn({ wabaId, ...action }, 'operator action accepted; the workflow applies it once it is free');
      ctx.status = 202;
      ctx.body = {
        wabaId,
        accepted: true,
        applied: false,
        message: `accepted; not applied within ${OPERATOR_ACTION_WAIT_MS / 1000} s (the workflow applies it after what it is doing now): see GET /v1/wabas/${wabaId}`,
      };
    } catch (err) {
      if (err instanceof ActionRefusedError) throw conflict('action_refused', err.message);
      if (err instanceof ActionNotAcceptedError)
        throw unavailable(
          'action_not_accepted',
          `${err.message}; Temporal may still apply it once it catches up: check GET /v1/wabas/${wabaId} before trying again`,
        );
      throw err;
    }
  });

  router.put('/phone-numbers/:phoneNumberId', async (ctx) => {
    const phoneNumberId = ctx.params.phoneNumberId!;
    if (!/^[0-9]{1,32}$/.test(phoneNumberId))
      throw badRequest('invalid_phone_number_id', 'a phone number id is digits');
    const body = parseInput(phoneNumberSchema, await readJson(ctx));
    const coexistence = body.coexistence ?? false;
    if (coexistence && body.mps !== undefined && body.mps > 20) {
      throw badRequest('invalid_mps', 'coexistence numbers are fixed by Meta at 20 messages per second', { max: 20 });
    }
    const { doc, created } = await registerPhoneNumber(
      c,
      phoneNumberId,
      { wabaId: body.wabaId, mps: body.mps ?? (coexistence ? 20 : config.sending.defaultMps), coexistence },
      new Date().toISOString(),
    );
    logger.info({ wabaId: doc.wabaId, phoneNumberId, mps: doc.mps, coexistence }, 'phone number registered');
    ctx.status = created ? 201 : 200;
    const { _id, ...rest } = doc;
    ctx.body = { phoneNumberId: _id, ...rest };
  });

  router.get('/phone-numbers', async (ctx) => {
    const wabaId = ctx.query.wabaId;
    if (wabaId !== undefined && typeof wabaId !== 'string') throw badRequest('invalid_waba_id', 'give one wabaId');
    const docs = await listPhoneNumbers(c, wabaId);
    ctx.body = { phoneNumbers: docs.map(({ _id, ...rest }) => ({ phoneNumberId: _id, ...rest })) };
  });

  return router;
}
