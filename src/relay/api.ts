import Router from '@koa/router';
import { z } from 'zod';
import type { Config } from '../config';
import type { Logger } from '../logger';
import type { Collections } from '../adapters/store/db';
import { listForwards, retryDead } from '../adapters/store/forwards';
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

/**
 * Operating the relay (keys from OPS_API_KEYS): what was forwarded, what is pending or
 * dead-lettered, and a retry of a dead-lettered delivery.
 */
export function createDeliveriesRouter(deps: { c: Collections; config: Config; logger: Logger }): Router {
  const { c, config, logger } = deps;
  const router = new Router({ prefix: '/v1/deliveries' });
  router.use(bearerAuth(config.opsApiKeys, 'ops API'));

  router.get('/', async (ctx) => {
    const q = parseInput(deliveriesQuerySchema, ctx.query);
    const since = q.since ? new Date(q.since).toISOString() : undefined;
    const until = q.until ? new Date(q.until).toISOString() : undefined;
    const rows = await listForwards(c, { ...q, ...(since ? { since } : {}), ...(until ? { until } : {}) });
    ctx.body = {
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
  });

  router.post('/:id/retry', async (ctx) => {
    const id = ctx.params.id!;
    const target = typeof ctx.query.target === 'string' ? ctx.query.target : undefined;
    const retried = await retryDead(c, id, target, Date.now());
    if (retried === 0)
      throw notFound('no_dead_letter', `delivery ${id} has no dead-lettered forward${target ? ` for ${target}` : ''}`);
    logger.warn({ deliveryId: id, target, retried }, 'dead-lettered delivery put back for forwarding');
    ctx.body = { deliveryId: id, retried };
  });

  return router;
}
