/**
 * Entry point of a worker process (`npm run worker` from source, `npm run start:worker` /
 * `node dist/src/worker-main.js` compiled): config from the environment.
 *
 * SIGINT/SIGTERM: the worker stops polling, in-flight activities get `SHUTDOWN_OPTIONS`' grace
 * time and are then cancelled (Temporal retries them elsewhere), the connections close and the
 * process exits 0 (after the last spans are flushed, with tracing on). A second SIGINT kills it at once.
 */
import { boot, onShutdown } from './boot';
import { connectRuntime } from './runtime';
import { createRelayMetrics } from './http/metrics';
import { startTracing } from './telemetry';
import {
  installTemporalRuntime,
  installUnhandledRejectionHandler,
  requestShutdown,
  startWorkerProcess,
} from './worker';

async function main(): Promise<void> {
  const { config, logger } = boot('coexist-relay-worker');
  installUnhandledRejectionHandler(logger);
  installTemporalRuntime(config);
  // Before any client or worker exists: they pick up the tracing interceptors (a no-op when off).
  const stopTracing = await startTracing(config, 'worker');
  const rt = await connectRuntime(config);
  const metrics = createRelayMetrics();
  // Resolves once the worker has drained (after a signal) and the clients are closed; rejects when
  // the worker fails (a fatal error, or the force time passed with activities still running).
  const { worker, connection, services } = await startWorkerProcess({ config, logger, rt, metrics });
  const stopped = (async () => {
    try {
      await worker.run();
    } finally {
      await services.stop();
      await connection.close();
      await rt.close();
      await stopTracing();
    }
  })();
  // The SDK also reacts to these signals by shutting the worker down; requestShutdown tolerates that.
  onShutdown(logger, async () => {
    requestShutdown(worker);
    await stopped;
  });
  logger.info(
    {
      taskQueue: config.temporal.taskQueue,
      temporal: config.temporal.address,
      ...(services.metricsUrl ? { metrics: services.metricsUrl } : {}),
      ...(config.temporalMetricsBind ? { temporalMetrics: config.temporalMetricsBind } : {}),
      ...(config.tracing ? { tracing: config.tracing.endpoint } : {}),
    },
    'worker running',
  );
  await stopped;
}

main().catch((err: unknown) => {
  process.stderr.write(`coexist-relay-worker: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
