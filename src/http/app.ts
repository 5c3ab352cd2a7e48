import Koa from 'koa';
import Router from '@koa/router';
import type { Client } from '@temporalio/client';
import type { Db } from 'mongodb';
import type { Config } from '../config';
import type { Logger } from '../logger';
import { appErrorListener, errorMiddleware } from './errors';
import { createMessagesRouter } from '../sending/api';
import { createOpsRouter } from '../ops/api';
import { createCounters, createWebhookRouter, type WebhookCounters, type WebhookSink } from './webhook';
import { createWebhookSink } from '../lifecycle/ingest';
import type { Collections } from '../adapters/store/db';
import type { LauncherDeps } from '../lifecycle/launch';

export interface AppDeps {
  config: Config;
  logger: Logger;
  db: Db;
  c: Collections;
  temporal: Client;
  /** Replaces the real sink (tests of the HTTP layer only). */
  sink?: WebhookSink;
  counters?: WebhookCounters;
}

async function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, rej) => (timer = setTimeout(() => rej(new Error(`timed out after ${ms} ms`)), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Builds the Koa app with its real dependencies injected: the webhook, the send API, the ops API,
 * health and metrics. Does not listen; `src/server.ts` does.
 */
export function createApp(deps: AppDeps): Koa {
  const { config, logger, c, temporal } = deps;
  const launcher: LauncherDeps = {
    client: temporal,
    taskQueue: config.temporal.taskQueue,
    lifecycle: config.lifecycle,
  };
  const counters = deps.counters ?? createCounters();
  const app = new Koa();
  app.proxy = true;
  app.on('error', appErrorListener(logger));
  app.use(errorMiddleware({ logger }));

  const health = new Router();
  health.get('/healthz', (ctx) => {
    ctx.body = { ok: true };
  });
  health.get('/readyz', async (ctx) => {
    const checks = await Promise.allSettled([
      withTimeout(deps.db.command({ ping: 1 }), 2_000),
      withTimeout(temporal.connection.workflowService.getSystemInfo({}), 2_000),
    ]);
    const down = (['mongodb', 'temporal'] as const).filter((_, i) => checks[i]!.status === 'rejected');
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
    sink: deps.sink ?? createWebhookSink({ c, launcher, logger }),
    logger,
    counters,
  });
  const routers = [
    health,
    webhook,
    createMessagesRouter({ c, launcher, config, logger }),
    createOpsRouter({ c, launcher, config, logger }),
  ];
  for (const r of routers) app.use(r.routes()).use(r.allowedMethods());
  return app;
}
