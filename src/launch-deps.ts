import type { Client } from '@temporalio/client';
import type { LifecycleSettings } from './contracts';

/**
 * What every flow's launcher needs to reach Temporal: the client, the task queue, and the
 * lifecycle settings a new lifecycle run starts with. Built once per process (src/runtime.ts) and
 * handed to the HTTP handlers and the activities; each flow's launch.ts owns its workflows' ids,
 * start options and client calls.
 */
export interface LaunchDeps {
  client: Client;
  taskQueue: string;
  lifecycle: LifecycleSettings;
}
