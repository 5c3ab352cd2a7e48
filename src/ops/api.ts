import Router from '@koa/router';
import type { Context } from 'koa';
import { WithStartWorkflowOperation, WorkflowUpdateFailedError } from '@temporalio/client';
import { wabaLifecycleWorkflow } from '../../workflows/lifecycle/workflow';
import { WabaIdKey } from '../../workflows/contracts';
import { z } from 'zod';
import type { Config } from '../config';
import type { Logger } from '../logger';
import type { Collections, PhoneNumberDoc, WabaDoc } from '../adapters/store/db';
import { countQueued } from '../adapters/store/queue';
import type { LauncherDeps } from '../lifecycle/launch';
import { operatorActionUpdate, wabaWorkflowId, type WabaState } from '../../workflows/contracts';
import { bearerAuth } from '../http/auth';
import { badRequest, conflict, notFound, parseInput, readRawBody } from '../http/errors';

const WABA_STATES = ['connected', 'offboarded', 'draining', 'reconnect_abandoned', 'partner_removed'] as const;
const MAX_OPS_BODY = 16 * 1024;

const phoneNumberSchema = z
  .object({
    wabaId: z.string().regex(/^\d{1,32}$/, 'must be a WABA id (digits)'),
    mps: z.number().int().min(1).max(1000).optional(),
    coexistence: z.boolean().optional(),
  })
  .strict();

const actionSchema = z
  .object({
    action: z.enum(['force_resume', 'force_abandon']),
    reason: z.string().trim().min(3, 'say why, in a few words').max(500),
    operator: z.string().max(100).optional(),
  })
  .strict();

async function readJson(ctx: Context): Promise<unknown> {
  const raw = await readRawBody(ctx, MAX_OPS_BODY);
  try {
    return JSON.parse(raw.toString('utf8'));
  } catch {
    throw badRequest('invalid_json', 'the body is not valid JSON');
  }
}

function wabaView(doc: Omit<WabaDoc, '_id'> & { _id: string }, queued: number) {
  return {
    wabaId: doc._id,
    state: doc.state,
    escalationLevel: doc.escalationLevel,
    queued,
    since: doc.since,
    ...(doc.reason ? { reason: doc.reason } : {}),
    lastEvents: doc.events.slice(-10),
    updatedAt: doc.updatedAt,
    workflowId: wabaWorkflowId(doc._id),
  };
}

/**
 * The ops API (keys from OPS_API_KEYS): WABA states, operator actions on the lifecycle workflow,
 * and the phone-number registry.
 */
export function createOpsRouter(deps: {
  c: Collections;
  launcher: LauncherDeps;
  config: Config;
  logger: Logger;
}): Router {
  const { c, launcher, config, logger } = deps;
  const router = new Router({ prefix: '/v1' });
  router.use(bearerAuth(config.opsApiKeys, 'ops API'));

  router.get('/wabas', async (ctx) => {
    const state = ctx.query.state;
    if (state !== undefined && (typeof state !== 'string' || !(WABA_STATES as readonly string[]).includes(state))) {
      throw badRequest('invalid_state', `state must be one of ${WABA_STATES.join(', ')}`);
    }
    const docs = await c.wabas
      .find(state ? { state: state as WabaState } : {})
      .sort({ _id: 1 })
      .limit(1000)
      .toArray();
    const queued = await Promise.all(docs.map((d) => countQueued(c, d._id)));
    ctx.body = { wabas: docs.map((d, i) => wabaView(d, queued[i]!)) };
  });

  router.get('/wabas/:wabaId', async (ctx) => {
    const wabaId = ctx.params.wabaId!;
    const doc = await c.wabas.findOne({ _id: wabaId });
    if (doc) {
      ctx.body = wabaView(doc, await countQueued(c, wabaId));
      return;
    }
    const registered = await c.phoneNumbers.findOne({ wabaId });
    if (!registered) throw notFound('unknown_waba', `WABA ${wabaId} has no registered number and no recorded event`);
    const now = new Date().toISOString();
    ctx.body = wabaView(
      { _id: wabaId, state: 'connected', since: now, escalationLevel: 0, events: [], updatedAt: now },
      0,
    );
  });

  router.post('/wabas/:wabaId/actions', async (ctx) => {
    const wabaId = ctx.params.wabaId!;
    const action = parseInput(actionSchema, await readJson(ctx));
    // Update-with-start: an abandoned WABA has no open run; a new one loads its document.
    const startWorkflowOperation = new WithStartWorkflowOperation(wabaLifecycleWorkflow, {
      workflowId: wabaWorkflowId(wabaId),
      taskQueue: launcher.taskQueue,
      args: [{ wabaId, settings: launcher.lifecycle }],
      workflowIdConflictPolicy: 'USE_EXISTING',
      typedSearchAttributes: [{ key: WabaIdKey, value: wabaId }],
    });
    try {
      const result = await launcher.client.workflow.executeUpdateWithStart(operatorActionUpdate, {
        args: [action],
        startWorkflowOperation,
      });
      logger.warn({ wabaId, ...action }, 'operator action applied');
      ctx.body = { wabaId, ...result };
    } catch (err) {
      if (err instanceof WorkflowUpdateFailedError) {
        throw conflict('action_refused', err.cause?.message ?? err.message);
      }
      throw err;
    }
  });

  router.put('/phone-numbers/:phoneNumberId', async (ctx) => {
    const phoneNumberId = ctx.params.phoneNumberId!;
    if (!/^\d{1,32}$/.test(phoneNumberId)) throw badRequest('invalid_phone_number_id', 'a phone number id is digits');
    const body = parseInput(phoneNumberSchema, await readJson(ctx));
    const coexistence = body.coexistence ?? false;
    if (coexistence && body.mps !== undefined && body.mps > 20) {
      throw badRequest('invalid_mps', 'coexistence numbers are fixed by Meta at 20 messages per second', { max: 20 });
    }
    const now = new Date().toISOString();
    const existing = await c.phoneNumbers.findOne({ _id: phoneNumberId });
    const doc: PhoneNumberDoc = {
      _id: phoneNumberId,
      wabaId: body.wabaId,
      mps: body.mps ?? (coexistence ? 20 : config.sending.defaultMps),
      coexistence,
      createdAt: existing?.createdAt ?? now,
      updatedAt: now,
    };
    await c.phoneNumbers.replaceOne({ _id: phoneNumberId }, doc, { upsert: true });
    logger.info({ wabaId: doc.wabaId, phoneNumberId, mps: doc.mps, coexistence }, 'phone number registered');
    ctx.status = existing ? 200 : 201;
    const { _id, ...rest } = doc;
    ctx.body = { phoneNumberId: _id, ...rest };
  });

  router.get('/phone-numbers', async (ctx) => {
    const wabaId = ctx.query.wabaId;
    if (wabaId !== undefined && typeof wabaId !== 'string') throw badRequest('invalid_waba_id', 'give one wabaId');
    const docs = await c.phoneNumbers
      .find(wabaId ? { wabaId } : {})
      .sort({ _id: 1 })
      .limit(1000)
      .toArray();
    ctx.body = { phoneNumbers: docs.map(({ _id, ...rest }) => ({ phoneNumberId: _id, ...rest })) };
  });

  return router;
}
