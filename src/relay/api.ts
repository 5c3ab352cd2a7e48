import Router from '@koa/router';
import type { Middleware } from 'koa';
import { z } from 'zod';
import type { Config } from '../config';
import type { Logger } from '../logger';
import type { Collections } from '../adapters/store/db';
import { listForwards, retryDead } from './forwards.store';
import { replayDeliveries } from '../lifecycle/outbox.store';
import { readJsonBody } from '../http/body';
import { bearerAuth } from '../http/auth';
import { notFound, parseInput } from '../http/errors';

/** `GET /v1/deliveries` query. */
export const deliveriesQuerySchema = z
  .object({
    state: z.enum(['pending', 'dead', 'delivered']).optional(),
    target: z.string().max(40).optional(),
    wabaId: z
      .string()
      .regex(/^[0-9]{1,32}$/)
      .optional(),
    since: z.iso.datetime({ offset: true }).optional(),
    until: z.iso.datetime({ offset: true }).optional(),
    limit: z.coerce.number().int().min(1).max(1000).default(100),
  })
  .strict();

/** One row of `GET /v1/deliveries`. */
export const deliveryRowSchema = z.object({
  deliveryId: z.string(),
  target: z.string(),
  state: z.enum(['pending', 'dead', 'delivered']),
  wabaIds: z.array(z.string()),
  receivedAt: z.string(),
  attempts: z.number().int(),
  deliveredAt: z.string().optional(),
  status: z.number().int().optional().describe("the target's HTTP status"),
  lastError: z.string().optional(),
});
export const deliveryListSchema = z.object({ deliveries: z.array(deliveryRowSchema) });
export const retryResultSchema = z.object({ deliveryId: z.string(), retried: z.number().int() });

/** `POST /v1/deliveries/replay` body: forward again what was received in [since, until). */
export const replayRequestSchema = z
  .object({
    since: z.iso.datetime({ offset: true }),
    until: z.iso.datetime({ offset: true }),
    target: z.string().max(40).optional().describe('only this forward target (default: every target it went to)'),
    wabaId: z
      .string()
      .regex(/^[0-9]{1,32}$/)
      .optional()
      .describe('only deliveries naming this WABA'),
    limit: z.number().int().min(1).max(10_000).default(1_000).describe('the oldest this many'),
  })
  .strict()
  .describe('an empty range (`until` not after `since`) replays nothing');
export const replayResultSchema = z.object({
  deliveries: z.number().int().describe('archived deliveries put back for forwarding'),
  forwards: z.number().int().describe('forward entries created (one per delivery and target)'),
});

/**
 * Operating the relay (keys from OPS_API_KEYS): what was forwarded, what is pending or
 * dead-lettered, a retry of a dead-lettered delivery, and a replay of a time range from the archive.
 */
export function createDeliveriesRouter(deps: {
  c: Collections;
  config: Config;
  logger: Logger;
  /** The per-key rate limit (src/http/ratelimit.ts), after authentication. */
  rateLimit?: Middleware;
}): Router {
  const { c, config, logger } = deps;
  const router = new Router({ prefix: '/v1/deliveries' });
  router.use(bearerAuth(config.opsApiKeys, 'ops API'));
  if (deps.rateLimit) router.use(deps.rateLimit);

  router.get('/', async (ctx) => {
    const q = parseInput(deliveriesQuerySchema, ctx.query);
    const since = q.since ? new Date(q.since).toISOString() : undefined;
    const until = q.until ? new Date(q.until).toISOString() : undefined;
    const rows = await listForwards(c, { ...q, ...(since ? { since } : {}), ...(until ? { until } : {}) });
    const body: z.output<typeof deliveryListSchema> = {
      deliveries: rows.map((r) => ({
        deliveryId: r.deliveryId,
        target: r.target,
        state: 'state' in r ? r.state : 'delivered',
        wabaIds: r.wabaIds,
        receivedAt: r.receivedAt,
        attempts: r.attempts,
        ...('deliveredAt' in r ? { deliveredAt: r.deliveredAt, status: r.status } : {}),
        ...('lastError' in r && r.lastError ? { lastError: r.lastError } : {}),
      })),
    };
    ctx.body = body;
  });

  router.post('/replay', async (ctx) => {
    const r = parseInput(replayRequestSchema, (await readJsonBody(ctx, 4 * 1024)).json);
    if (r.target && !config.forward.targets.some((t) => t.name === r.target))
      throw notFound('unknown_target', `no forward target named ${r.target} (FORWARD_TARGETS)`);
    const filter = {
      since: new Date(r.since).toISOString(),
      until: new Date(r.until).toISOString(),
      limit: r.limit,
      ...(r.target ? { target: r.target } : {}),
      ...(r.wabaId ? { wabaId: r.wabaId } : {}),
    };
    const configured = config.forward.targets.map((t) => t.name);
    const result = await replayDeliveries(c, filter, configured, Date.now());
    logger.warn({ ...filter, ...result }, 'deliveries replayed to forward targets');
    const body: z.output<typeof replayResultSchema> = result;
    ctx.body = body;
  });

  router.post('/:id/retry', async (ctx) => {
    const id = ctx.params.id!;
    const target = typeof ctx.query.target === 'string' ? ctx.query.target : undefined;
    const retried = await retryDead(c, id, target, Date.now());
    if (retried === 0)
      throw notFound('no_dead_letter', `delivery ${id} has no dead-lettered forward${target ? ` for ${target}` : ''}`);
    logger.warn({ deliveryId: id, target, retried }, 'dead-lettered delivery put back for forwarding');
    const body: z.output<typeof retryResultSchema> = { deliveryId: id, retried };
    ctx.body = body;
  });

  return router;
}
