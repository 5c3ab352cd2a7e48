import type Koa from 'koa';
import { loadConfig } from '../../src/config';
import { createApp } from '../../src/http/app';
import { createRelayMetrics, type RelayMetrics } from '../../src/http/metrics';
import { createLogger } from '../../src/logger';
import type { Collections } from '../../src/adapters/store/db';
import type { LaunchDeps } from '../../src/launch-deps';

/**
 * A server's app as `createApp` wires it (relay metrics, store gauges, webhook counters), with no
 * store or Temporal behind it: for what needs no request to reach them. A scrape's store reads fail
 * (their gauges are left out of it).
 */
export function detachedServerApp(): { app: Koa; metrics: RelayMetrics } {
  const metrics = createRelayMetrics();
  const config = loadConfig({
    META_APP_SECRET: 'secret',
    META_VERIFY_TOKEN: 'tok',
    OPS_API_KEYS: 'ops',
    SEND_API_KEYS: 'send',
    TEMPORAL_ADDRESS: '127.0.0.1:7233',
    MONGODB_URI: 'mongodb://127.0.0.1:27017/',
    GRAPH_API_TOKEN: 'graph',
  });
  const app = createApp({
    config,
    logger: createLogger('silent'),
    c: {} as Collections,
    launch: { lifecycle: config.lifecycle, taskQueue: config.temporal.taskQueue } as LaunchDeps,
    readiness: {},
    metrics,
  });
  return { app, metrics };
}
