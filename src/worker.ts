import fs from 'node:fs';
import path from 'node:path';
import { NativeConnection, Worker, bundleWorkflowCode, type WorkerOptions } from '@temporalio/worker';
import { createActivities, type ActivityDeps } from '../activities';
import type { Config } from './config';
import type { GraphClient } from './adapters/graph/client';
import type { Logger } from './logger';
import type { LaunchDeps } from './lifecycle/launch';
import type { Collections } from './adapters/store/db';

/** The workflow code the worker runs (bundled for Temporal's sandbox). */
export const WORKFLOWS_PATH = require.resolve('../workflows');

/** Bundles the workflows once (a few seconds); tests and benchmarks share one bundle. */
export async function bundleWorkflows(): Promise<{ code: string }> {
  return bundleWorkflowCode({
    workflowsPath: WORKFLOWS_PATH,
    logger: { trace() {}, debug() {}, info() {}, warn() {}, error() {}, log() {} },
  });
}

/** The file `npm run build` writes next to the compiled code: dist/workflow-bundle.js. */
export const BUILT_BUNDLE_FILE = 'workflow-bundle.js';

/**
 * The prebuilt workflow bundle this process should load, or undefined to bundle the source at start:
 * `WORKFLOW_BUNDLE_PATH` when set, else the bundle `npm run build` put next to the compiled worker
 * (dist/src/worker.js → dist/workflow-bundle.js). Running from source (tsx, Jest) never picks up a
 * dist/ bundle, which could be stale.
 */
export function prebuiltBundlePath(config: Pick<Config, 'workflowBundlePath'>): string | undefined {
  if (config.workflowBundlePath) return path.resolve(config.workflowBundlePath);
  if (path.extname(__filename) !== '.js') return undefined;
  const next = path.join(__dirname, '..', BUILT_BUNDLE_FILE);
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

export interface WorkerDeps {
  config: Config;
  logger: Logger;
  c: Collections;
  launch: LaunchDeps;
  graph: GraphClient;
  /** A bundle built in process (tests); without it, `prebuiltBundlePath` or bundling at start. */
  workflowBundle?: { code: string };
  /** Overrides for tests and benchmarks (drain tuning, limits). */
  activityOverrides?: Partial<Pick<ActivityDeps, 'drainTuning' | 'pacer'>>;
  workerOptions?: Partial<WorkerOptions>;
}

/**
 * The composition root of the worker: real clients in, activities built by their factory, one
 * worker on the configured task queue polling both workflow types.
 */
export async function createWorker(deps: WorkerDeps): Promise<{ worker: Worker; connection: NativeConnection }> {
  const { config } = deps;
  const connection = await NativeConnection.connect({ address: config.temporal.address });
  const activities = createActivities({
    c: deps.c,
    graph: deps.graph,
    launch: deps.launch,
    config,
    logger: deps.logger.child({ component: 'activities' }),
    ...deps.activityOverrides,
  });
  const codePath = deps.workflowBundle ? undefined : prebuiltBundlePath(config);
  deps.logger.info(
    { workflowCode: deps.workflowBundle ? 'bundle given' : (codePath ?? `bundled at start from ${WORKFLOWS_PATH}`) },
    'worker workflow code',
  );
  const worker = await Worker.create({
    connection,
    namespace: config.temporal.namespace,
    taskQueue: config.temporal.taskQueue,
    ...(deps.workflowBundle
      ? { workflowBundle: deps.workflowBundle }
      : codePath
        ? { workflowBundle: { codePath } }
        : { workflowsPath: WORKFLOWS_PATH }),
    activities,
    // Heartbeats reach the server at least every second, so a drain learns within about a second
    // that it was cancelled (new offboarding, PARTNER_REMOVED). The SDK's default throttle is 80% of
    // the heartbeat timeout, which would let a cancelled drain keep sending for many seconds.
    maxHeartbeatThrottleInterval: '1 second',
    ...deps.workerOptions,
  });
  return { worker, connection };
}
