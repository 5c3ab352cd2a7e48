import fs from 'node:fs';
import path from 'node:path';
import type { Server } from 'node:http';
import {
  NativeConnection,
  Runtime as TemporalRuntime,
  Worker,
  bundleWorkflowCode,
  type WorkerOptions,
} from '@temporalio/worker';
import { createActivities, type ActivityDeps } from './activities';
import type { Config } from './config';
import type { GraphClient } from './adapters/graph/client';
import type { Logger } from './logger';
import { startGateProbeSweep } from './lifecycle/launch';
import type { LaunchDeps } from './launch-deps';
import { readServerTime, type Collections } from './adapters/store/db';
import type { Runtime } from './runtime';
import { startRetention } from './adapters/store/retention';
import { addPacingClockGauges, observeStore, serveMetrics, type RelayMetrics } from './http/metrics';
import { startSharedClock, type SharedClock } from './sending/shared-clock';
import { WORKFLOW_TRACING_MODULE, temporalWorkerTracing } from './telemetry';

/** The workflow code the worker runs (bundled for Temporal's sandbox). */
export const WORKFLOWS_PATH = require.resolve('./workflows');

/**
 * Bundles the workflows once (a few seconds); tests and benchmarks share one bundle. With
 * `tracing`, the OpenTelemetry workflow interceptors are bundled in (`WORKFLOW_TRACING_MODULE`):
 * a tracing worker needs that bundle for its workflow spans, and only a tracing worker has one
 * (the interceptors make spans in every workflow and add a header to every activity it schedules).
 */
export async function bundleWorkflows(options: { tracing?: boolean } = {}): Promise<{ code: string }> {
  return bundleWorkflowCode({
    workflowsPath: WORKFLOWS_PATH,
    ...(options.tracing ? { workflowInterceptorModules: [require.resolve(WORKFLOW_TRACING_MODULE)] } : {}),
    logger: { trace() {}, debug() {}, info() {}, warn() {}, error() {}, log() {} },
  });
}

/** The files `npm run build` writes next to the compiled code: dist/workflow-bundle.js … */
export const BUILT_BUNDLE_FILE = 'workflow-bundle.js';
/** … and dist/workflow-bundle-tracing.js, the same workflows with the tracing interceptors. */
export const BUILT_TRACING_BUNDLE_FILE = 'workflow-bundle-tracing.js';

/** Whether a workflow bundle's code has the tracing interceptors (`bundleWorkflows({ tracing: true })`). */
export function bundleHasTracing(code: string): boolean {
  return code.includes('interceptors-opentelemetry/lib/workflow-interceptors');
}

/**
 * The prebuilt workflow bundle this process should load, or undefined to bundle the source at start:
 * `WORKFLOW_BUNDLE_PATH` when set, else the bundle `npm run build` put next to the compiled worker
 * (dist/src/worker.js → dist/workflow-bundle.js, or dist/workflow-bundle-tracing.js with tracing
 * on). Running from source (tsx, Jest) never picks up a dist/ bundle, which could be stale.
 */
export function prebuiltBundlePath(config: Pick<Config, 'workflowBundlePath' | 'tracing'>): string | undefined {
  if (config.workflowBundlePath) return path.resolve(config.workflowBundlePath);
  if (path.extname(__filename) !== '.js') return undefined;
  const next = path.join(__dirname, '..', config.tracing ? BUILT_TRACING_BUNDLE_FILE : BUILT_BUNDLE_FILE);
  return fs.existsSync(next) ? next : undefined;
}

/**
 * Shutdown bounds for the entry points. On SIGINT/SIGTERM the worker stops polling, lets in-flight
 * activities finish for the grace time, then cancels them (a drain heartbeats, so it sees the
 * cancellation within about a second and Temporal retries it on another worker). The force time
 * stays under docker-compose's `stop_grace_period` (30 s), after which the process is killed.
 */
export const SHUTDOWN_OPTIONS = {
  shutdownGraceTime: '10 seconds',
  shutdownForceTime: '25 seconds',
} as const satisfies Partial<WorkerOptions>;

/**
 * Asks a worker to stop unless it is already stopping: the SDK itself reacts to SIGINT/SIGTERM
 * (and `Worker.shutdown` throws once the worker left RUNNING), so signal handlers call this.
 */
export function requestShutdown(worker: Worker): void {
  if (worker.getState() === 'RUNNING') worker.shutdown();
}

/**
 * A process-level `unhandledRejection` handler for the worker: a promise nobody awaited that
 * rejects (a background flush after a database outage, say) is logged and counted instead of
 * ending the process (Node's default). Returns the count and a way to remove the handler.
 */
export function installUnhandledRejectionHandler(logger: Logger): { count(): number; uninstall(): void } {
  let count = 0;
  const handler = (reason: unknown): void => {
    count++;
    logger.error(
      { err: reason instanceof Error ? { message: reason.message, stack: reason.stack } : String(reason), count },
      'unhandled promise rejection in the worker: logged and counted, the worker keeps running',
    );
  };
  process.on('unhandledRejection', handler);
  return { count: () => count, uninstall: () => void process.off('unhandledRejection', handler) };
}

export interface WorkerDeps {
  config: Config;
  logger: Logger;
  /** The database: the pacing clock reads its server's time. */
  db: Runtime['db'];
  c: Collections;
  launch: LaunchDeps;
  graph: GraphClient;
  /** A bundle built in process (tests); without it, `prebuiltBundlePath` or bundling at start. */
  workflowBundle?: { code: string };
  /** Overrides for tests and benchmarks (drain tuning, limits). */
  activityOverrides?: Partial<Pick<ActivityDeps, 'drainTuning' | 'pacer' | 'clock'>>;
  workerOptions?: Partial<WorkerOptions>;
  /** The process's metrics: settlements recorded by the activities are counted in them. */
  metrics?: RelayMetrics;
}

/**
 * The composition root of the worker: real clients in, activities built by their factory, one
 * worker on the configured task queue polling both workflow types. Pacing runs on the database
 * server's clock (src/sending/shared-clock.ts), read here before the worker starts (the start-up
 * check: alerts when it cannot be read within the caps' tolerance) and then periodically until
 * `clock.stop()`.
 */
export async function createWorker(
  deps: WorkerDeps,
): Promise<{ worker: Worker; connection: NativeConnection; clock?: SharedClock }> {
  const { config } = deps;
  if (deps.metrics) observeStore(deps.metrics, deps.c);
  const clock =
    deps.activityOverrides?.pacer || deps.activityOverrides?.clock
      ? undefined
      : await startSharedClock({
          readShared: () => readServerTime(deps.db),
          logger: deps.logger.child({ component: 'pacing-clock' }),
          ...(deps.metrics ? { onStatus: addPacingClockGauges(deps.metrics.registry) } : {}),
        });
  const connection = await NativeConnection.connect({ address: config.temporal.address }).catch((err: unknown) => {
    clock?.stop();
    throw err;
  });
  const activities = createActivities({
    c: deps.c,
    graph: deps.graph,
    launch: deps.launch,
    config,
    logger: deps.logger.child({ component: 'activities' }),
    ...(deps.metrics
      ? {
          onAlertDelivery: (sink, outcome) => deps.metrics!.alertDeliveries.inc({ sink, outcome }),
          onGateProbe: (verdict) => deps.metrics!.gateProbes.inc({ verdict }),
          onLateDeparture: (remedy) => deps.metrics!.lateDepartures.inc({ remedy }),
        }
      : {}),
    ...(clock ? { clock } : {}),
    ...deps.activityOverrides,
  });
  const codePath = deps.workflowBundle ? undefined : prebuiltBundlePath(config);
  deps.logger.info(
    { workflowCode: deps.workflowBundle ? 'bundle given' : (codePath ?? `bundled at start from ${WORKFLOWS_PATH}`) },
    'worker workflow code',
  );
  // With tracing on (startTracing ran first): activity spans, and the sink for workflow spans. The
  // workflow interceptors are in the bundle: built in at start, or the prebuilt tracing bundle.
  const tracing = temporalWorkerTracing();
  const fromSource = !deps.workflowBundle && !codePath;
  if (tracing && !fromSource) {
    const code = deps.workflowBundle?.code ?? fs.readFileSync(codePath!, 'utf8');
    if (!bundleHasTracing(code)) {
      deps.logger.warn(
        { workflowCode: codePath ?? 'bundle given' },
        'tracing is on but the workflow bundle has no tracing interceptors: no workflow spans, and activity spans start new traces',
      );
    }
  }
  const worker = await Worker.create({
    connection,
    namespace: config.temporal.namespace,
    taskQueue: config.temporal.taskQueue,
    ...(deps.workflowBundle
      ? { workflowBundle: deps.workflowBundle }
      : codePath
        ? { workflowBundle: { codePath } }
        : { workflowsPath: WORKFLOWS_PATH }),
    ...(tracing
      ? {
          interceptors: {
            activity: tracing.activity,
            ...(fromSource ? { workflowModules: [require.resolve(WORKFLOW_TRACING_MODULE)] } : {}),
          },
          sinks: tracing.sinks,
        }
      : {}),
    activities,
    // Heartbeats reach the server at least every second, so a drain learns within about a second
    // that it was cancelled (new offboarding, PARTNER_REMOVED). The SDK's default throttle is 80% of
    // the heartbeat timeout, which would let a cancelled drain keep sending for many seconds.
    maxHeartbeatThrottleInterval: '1 second',
    ...deps.workerOptions,
  });
  // The deployment's one gate probe sweep: started by whichever worker comes first (it runs on any).
  const sweep = await startGateProbeSweep(deps.launch);
  deps.logger.info({ sweep, taskQueue: config.temporal.taskQueue }, 'gate probe sweep');
  return { worker, connection, ...(clock ? { clock } : {}) };
}

/**
 * Installs the Temporal runtime with the SDK's Prometheus exporter on `TEMPORAL_METRICS_BIND`
 * (`host:port`, served at `/metrics` by the SDK's core). Call once per process, before any worker
 * connection is made; a no-op without the setting.
 */
export function installTemporalRuntime(config: Pick<Config, 'temporalMetricsBind'>): void {
  if (!config.temporalMetricsBind) return;
  TemporalRuntime.install({
    telemetryOptions: {
      metrics: { prometheus: { bindAddress: config.temporalMetricsBind, useSecondsForDurations: true } },
    },
  });
}

/**
 * What a worker process runs besides the worker: the retention purge loop (see
 * src/adapters/store/retention.ts) and, with `WORKER_METRICS_PORT`, a `/metrics` listener for the
 * metrics recorded in this process. `stop()` ends both.
 */
export async function startWorkerServices(deps: {
  config: Config;
  logger: Logger;
  db: Runtime['db'];
  c: Collections;
  metrics: RelayMetrics;
}): Promise<{ metricsUrl?: string; stop(): Promise<void> }> {
  const { config, logger, metrics } = deps;
  const retention = startRetention({
    db: deps.db,
    c: deps.c,
    retention: config.retention,
    logger: logger.child({ component: 'retention' }),
    onPurged: (collection, n) => metrics.retentionPurged.inc({ collection }, n),
  });
  let server: Server | undefined;
  if (config.workerMetrics) {
    server = await serveMetrics(metrics, config.workerMetrics.port, config.workerMetrics.host).catch(
      async (err: unknown) => {
        await retention.stop();
        throw err;
      },
    );
  }
  const addr = server?.address();
  return {
    ...(addr && typeof addr === 'object'
      ? { metricsUrl: `http://${config.workerMetrics!.host}:${addr.port}/metrics` }
      : {}),
    async stop() {
      await Promise.all([retention.stop(), server && new Promise<void>((resolve) => server.close(() => resolve()))]);
    },
  };
}

/**
 * A worker process's whole set: the Temporal worker (with the shutdown options of the entry
 * points) and its services (retention, worker metrics), over one connected runtime.
 */
export async function startWorkerProcess(deps: {
  config: Config;
  logger: Logger;
  rt: Runtime;
  metrics: RelayMetrics;
}): Promise<{
  worker: Worker;
  connection: NativeConnection;
  services: Awaited<ReturnType<typeof startWorkerServices>>;
}> {
  const { config, logger, rt, metrics } = deps;
  const { worker, connection, clock } = await createWorker({
    metrics,
    config,
    logger,
    db: rt.db,
    c: rt.c,
    launch: rt.launch,
    graph: rt.graph,
    workerOptions: SHUTDOWN_OPTIONS,
  });
  const started = await startWorkerServices({ config, logger, db: rt.db, c: rt.c, metrics });
  const services = {
    ...started,
    async stop() {
      clock?.stop();
      await started.stop();
    },
  };
  return { worker, connection, services };
}
