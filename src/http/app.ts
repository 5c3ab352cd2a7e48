import Koa from 'koa';
import Router from '@koa/router';
import type { Config } from '../config';
import type { Logger } from '../logger';
import type { Collections } from '../adapters/store/db';
import { createWebhookSink } from '../lifecycle/ingest';
import type { LaunchDeps } from '../lifecycle/launch';
import { createOpsRouter } from '../ops/api';
import { createAdmission } from '../sending/admission';
import { createMessagesRouter } from '../sending/api';
import { withTimeout } from '../util/time';
import { appErrorListener, errorMiddleware } from './errors';
import { inFlightLimit } from './inflight';
import { createCounters, createWebhookRouter, type WebhookCounters, type WebhookSink } from './webhook';

export interface AppDeps {
  config: Config;
  logger: Logger;
  c: Collections;
  launch: LaunchDeps;
  /** Readiness checks by dependency name (`/readyz` answers 503 naming those that fail). */
  readiness: Record<string, () => Promise<unknown>>;
  /** Replaces the real sink (tests of the HTTP layer only). */
  sink?: WebhookSink;
  counters?: WebhookCounters;
}

/**
 * Builds the Koa app with its real dependencies injected: the webhook, the send API, the ops API,
 * health and metrics. Does not listen; `src/server.ts` does.
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
  health.get('/metrics', (ctx) => {
    ctx.type = 'text/plain; version=0.0.4';
    ctx.body = counters.toPrometheus();
  });

  const webhook = createWebhookRouter({
    ...config.webhook,
    sink: deps.sink ?? createWebhookSink({ c, launch, logger }),
    logger,
    counters,
  });
  const routers = [
    health,
    webhook,
    createMessagesRouter({ c, launch, admission, config, logger }),
    createOpsRouter({ c, launch, config, logger }),
  ];
  for (const r of routers) app.use(r.routes()).use(r.allowedMethods());
  return app;
}
