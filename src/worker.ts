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

export interface WorkerDeps {
  config: Config;
  logger: Logger;
  c: Collections;
  launch: LaunchDeps;
  graph: GraphClient;
  /** A prebuilt bundle; without it the worker bundles at start. */
  workflowBundle?: { code: string };
  /** Overrides for tests and benchmarks (drain tuning, limits). */
  activityOverrides?: Partial<Pick<ActivityDeps, 'drainTuning' | 'limiters'>>;
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
  const worker = await Worker.create({
    connection,
    namespace: config.temporal.namespace,
    taskQueue: config.temporal.taskQueue,
    ...(deps.workflowBundle ? { workflowBundle: deps.workflowBundle } : { workflowsPath: WORKFLOWS_PATH }),
    activities,
    // Heartbeats reach the server at least every second, so a drain learns within about a second
    // that it was cancelled (new offboarding, PARTNER_REMOVED). The SDK's default throttle is 80% of
    // the heartbeat timeout, which would let a cancelled drain keep sending for many seconds.
    maxHeartbeatThrottleInterval: '1 second',
    ...deps.workerOptions,
  });
  return { worker, connection };
}
