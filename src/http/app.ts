import Koa from 'koa';
import Router from '@koa/router';
import type { Config } from '../config';
import type { Logger } from '../logger';
import type { Collections } from '../adapters/store/db';
import { createWebhookSink, type OutboxNotifier } from '../lifecycle/ingest';
import type { LaunchDeps } from '../lifecycle/launch';
import { createOpsRouter } from '../ops/api';
import { createDeliveriesRouter } from '../relay/api';
import { serviceEventCatalog } from '../relay/events';
import { createAdmission } from '../sending/admission';
import { createMessagesRouter } from '../sending/api';
import { withTimeout } from '../util/time';
import { appErrorListener, errorMiddleware, HttpError, notFound } from './errors';
import { inFlightLimit } from './inflight';
import { openApiDocument } from './openapi';
import { createCounters, createWebhookRouter, type WebhookCounters, type WebhookSink } from './webhook';

/**
 * Answers methods no router knows (TRACE, CONNECT, …) as 405 with the resource's `Allow` header
 * (404 for a path that no route serves); @koa/router would answer 501 Not Implemented, a server error.
 */
function unknownMethods(routers: Router[]): Koa.Middleware {
  const known = new Set(routers.flatMap((r) => r.methods));
  return async (ctx, next) => {
    if (known.has(ctx.method)) return next();
    const allowed = new Set(routers.flatMap((r) => r.match(ctx.path, ctx.method).path.flatMap((l) => l.methods)));
    if (allowed.size === 0) throw notFound('not_found', 'not found');
    ctx.set('Allow', [...allowed].join(', '));
    throw new HttpError(405, 'method_not_allowed', `${ctx.method} is not allowed here`);
  };
}

export interface AppDeps {
  config: Config;
  logger: Logger;
  c: Collections;
  launch: LaunchDeps;
  /** Readiness checks by dependency name (`/readyz` answers 503 naming those that fail). */
  readiness: Record<string, () => Promise<unknown>>;
  /** The outbox relay of this process (src/lifecycle/outbox-relay.ts); without one, recorded
   *  deliveries wait for another process's relay to sweep them. */
  outbox?: OutboxNotifier;
  /** Replaces the real sink (tests of the HTTP layer only). */
  sink?: WebhookSink;
  counters?: WebhookCounters;
}

/**
 * Builds the Koa app with its real dependencies injected: the webhook, the send API, the ops API,
 * health, metrics and the OpenAPI document. Does not listen; `src/server.ts` does.
 */
export function createApp(deps: AppDeps): Koa {
  const { config, logger, c, launch } = deps;
  const admission = createAdmission({ c, launch, logger });
  const counters = deps.counters ?? createCounters();
  const app = new Koa();
  app.proxy = true;
  app.on('error', appErrorListener(logger));
  app.use(errorMiddleware({ logger }));
  const webhookPath = config.webhook.path;
  app.use(
    inFlightLimit({
      name: 'webhook',
      max: config.limits.webhookMaxInFlight,
      applies: (ctx) => ctx.method === 'POST' && ctx.path === webhookPath,
      status: 503,
      logger,
      onShed: () => counters.shed++,
    }),
  );
  app.use(
    inFlightLimit({
      name: 'api',
      max: config.limits.apiMaxInFlight,
      applies: (ctx) => ctx.path.startsWith('/v1/'),
      status: 429,
      logger,
    }),
  );

  const health = new Router();
  health.get('/healthz', (ctx) => {
    ctx.body = { ok: true };
  });
  health.get('/readyz', async (ctx) => {
    const names = Object.keys(deps.readiness);
    const checks = await Promise.allSettled(names.map((n) => withTimeout(deps.readiness[n]!(), 2_000, n)));
    const down = names.filter((_, i) => checks[i]!.status === 'rejected');
    ctx.status = down.length === 0 ? 200 : 503;
    ctx.body =
      down.length === 0
        ? { ok: true }
        : { ok: false, down, error: { code: 'not_ready', message: `not reachable: ${down.join(', ')}` } };
  });
  // The API contract (no auth), built once from the zod schemas.
  const contract = openApiDocument({ webhookPath: config.webhook.path });
  health.get('/v1/events/catalog', (ctx) => {
    ctx.body = serviceEventCatalog();
  });
  health.get('/openapi.json', (ctx) => {
    ctx.body = contract;
  });
  health.get('/metrics', (ctx) => {
    ctx.type = 'text/plain; version=0.0.4';
    ctx.body = counters.toPrometheus();
  });

  const webhook = createWebhookRouter({
    ...config.webhook,
    sink:
      deps.sink ??
      createWebhookSink({
        c,
        logger,
        forward: config.forward.targets,
        ...(deps.outbox ? { outbox: deps.outbox } : {}),
      }),
    logger,
    counters,
  });
  const routers = [
    health,
    webhook,
    createMessagesRouter({ c, launch, admission, config, logger }),
    createOpsRouter({ c, launch, config, logger }),
    createDeliveriesRouter({ c, config, logger }),
  ];
  app.use(unknownMethods(routers));
  for (const r of routers) app.use(r.routes()).use(r.allowedMethods());
  return app;
}
