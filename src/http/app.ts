import Koa from 'koa';
import Router from '@koa/router';
import type { Config } from '../config';
import type { Logger } from '../logger';
import type { Collections } from '../adapters/store/db';
import { createWebhookSink, type OutboxNotifier } from '../lifecycle/ingest';
import type { LaunchDeps } from '../launch-deps';
import { createOpsRouter } from '../ops/api';
import { createDeliveriesRouter } from '../relay/api';
import { serviceEventCatalog } from '../relay/events';
import { createAdmission } from '../sending/admission';
import { createMessagesRouter } from '../sending/api';
import { withTimeout } from '../util/time';
import { appErrorListener, errorMiddleware, HttpError, notFound } from './errors';
import { inFlightLimit } from './inflight';
import { addStoreGauges, addWebhookCounters, observeStore, createRelayMetrics, type RelayMetrics } from './metrics';
import { openApiDocument } from './openapi';
import { createKeyRateLimit } from './ratelimit';
import { httpTracing } from './tracing';
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
  /** The process's metrics (a worker in the same process shares them); new ones when absent. */
  metrics?: RelayMetrics;
  /**
   * Which routes this app serves: `all` (one listener), or, with an internal listener
   * (`INTERNAL_PORT`), `public` (Meta's webhook, the send API, /healthz) and `internal` (the ops
   * API, /metrics, /readyz, /openapi.json, /healthz). Default `all`.
   */
  surface?: 'all' | 'public' | 'internal';
}

/** The apps of one server process and what they share. */
export interface Apps {
  /** The app on `PORT` (everything, or the public routes when `internal` exists). */
  main: Koa;
  /** The app on `INTERNAL_PORT`, when configured. */
  internal?: Koa;
  metrics: RelayMetrics;
}

/**
 * The server's apps: one serving everything, or, with `config.internal`, a public and an internal
 * one sharing the metrics, webhook counters and rate limits.
 */
export function createApps(deps: Omit<AppDeps, 'surface'>): Apps {
  const metrics = deps.metrics ?? createRelayMetrics();
  const counters = deps.counters ?? createCounters();
  const shared = { ...deps, metrics, counters };
  if (!deps.config.internal) return { main: createApp(shared), metrics };
  return {
    main: createApp({ ...shared, surface: 'public' }),
    internal: createApp({ ...shared, surface: 'internal' }),
    metrics,
  };
}

const registered = new WeakSet<RelayMetrics>();

/** Once per metrics object: store gauges, webhook counters and settlement counts feed it. */
function wireMetrics(metrics: RelayMetrics, c: Collections, counters: WebhookCounters, config: Config): void {
  if (registered.has(metrics)) return;
  registered.add(metrics);
  addStoreGauges(metrics, c, config.forward, Date.now, config.lifecycle.probeIntervalMs);
  addWebhookCounters(metrics, counters);
  observeStore(metrics, c);
}

/**
 * Builds the Koa app with its real dependencies injected: the webhook, the send API, the ops API,
 * health, metrics and the OpenAPI document. Does not listen; `src/server.ts` does.
 */
export function createApp(deps: AppDeps): Koa {
  const { config, logger, c, launch } = deps;
  const surface = deps.surface ?? 'all';
  const serves = (part: 'public' | 'internal'): boolean => surface === 'all' || surface === part;
  const admission = createAdmission({
    c,
    launch,
    logger,
    forwardTargets: config.forward.targets,
    graph: config.graph,
    ...(deps.outbox ? { outbox: deps.outbox } : {}),
  });
  const counters = deps.counters ?? createCounters();
  const metrics = deps.metrics ?? createRelayMetrics();
  wireMetrics(metrics, c, counters, config);
  const rateLimit = (api: string) =>
    createKeyRateLimit({ ...config.apiKeyRate, onLimited: () => metrics.apiRateLimited.inc({ api }) });
  const app = new Koa();
  app.proxy = true;
  app.on('error', appErrorListener(logger));
  // Outermost: the span sees the status errorMiddleware renders (a no-op without tracing).
  app.use(httpTracing());
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
  app.use(async function webhookAckTimer(ctx, next) {
    if (ctx.method !== 'POST' || ctx.path !== webhookPath || !serves('public')) return next();
    const start = process.hrtime.bigint();
    const seconds = () => Number(process.hrtime.bigint() - start) / 1e9;
    try {
      await next();
      metrics.webhookAck.observe({ code: ctx.status }, seconds());
    } catch (err) {
      // errorMiddleware (outside this one) renders it with this status.
      const status = (err as { status?: unknown }).status;
      metrics.webhookAck.observe({ code: typeof status === 'number' ? status : 500 }, seconds());
      throw err;
    }
  });

  const health = new Router();
  health.get('/healthz', (ctx) => {
    ctx.body = { ok: true };
  });
  const internalRoutes = new Router();
  internalRoutes.get('/readyz', async (ctx) => {
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
  internalRoutes.get('/v1/events/catalog', (ctx) => {
    ctx.body = serviceEventCatalog();
  });
  internalRoutes.get('/openapi.json', (ctx) => {
    ctx.body = contract;
  });
  internalRoutes.get('/metrics', async (ctx) => {
    ctx.type = metrics.registry.contentType;
    ctx.body = await metrics.render();
  });

  const routers = [health];
  if (serves('internal')) routers.push(internalRoutes);
  if (serves('public')) {
    routers.push(
      createWebhookRouter({
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
      }),
      createMessagesRouter({ c, launch, admission, config, logger, rateLimit: rateLimit('send') }),
    );
  }
  if (serves('internal')) {
    const ops = rateLimit('ops');
    routers.push(
      createOpsRouter({ c, launch, config, logger, rateLimit: ops }),
      createDeliveriesRouter({ c, config, logger, rateLimit: ops }),
    );
  }
  app.use(unknownMethods(routers));
  for (const r of routers) app.use(r.routes()).use(r.allowedMethods());
  return app;
}
