import type { Client } from '@temporalio/client';
import type { Config } from '../src/config';
import type { GraphClient } from '../src/adapters/graph/client';
import type { Logger } from '../src/logger';
import type { Collections } from '../src/adapters/store/db';
import { countQueued } from '../src/adapters/store/queue';
import { loadWaba, saveWaba, type WabaSnapshot } from '../src/adapters/store/wabas';
import { RateLimiters } from '../src/sending/pacing';
import { createAlertActivities } from './alerts';
import { createDrainActivities, type DrainTuning } from './drain';
import { createSendActivities } from './send';

/** What the activities are built from: real clients, injected by the worker (or a test). */
export interface ActivityDeps {
  c: Collections;
  graph: GraphClient;
  temporal: Client;
  config: Config;
  logger: Logger;
  limiters?: RateLimiters;
  drainTuning?: Partial<DrainTuning>;
}

/**
 * Builds every activity the workflows call. Workflows import only the type
 * (`proxyActivities<Activities>`), never this code.
 */
export function createActivities(deps: ActivityDeps) {
  const limiters = deps.limiters ?? new RateLimiters();
  const launcher = {
    client: deps.temporal,
    taskQueue: deps.config.temporal.taskQueue,
    lifecycle: deps.config.lifecycle,
  };
  const { c } = deps;
  return {
    /** The WABA's document, or a fresh connected one. */
    loadWaba: (wabaId: string): Promise<WabaSnapshot> => loadWaba(c, wabaId, new Date().toISOString()),
    /** Replaces the WABA's document (only its lifecycle workflow calls this). */
    saveWaba: (snapshot: WabaSnapshot): Promise<void> => saveWaba(c, snapshot),
    countQueued: (wabaId: string): Promise<number> => countQueued(c, wabaId),
    ...createSendActivities({ ...deps, limiters, launcher }),
    ...createDrainActivities({ ...deps, limiters, tuning: deps.drainTuning }),
    ...createAlertActivities({
      logger: deps.logger,
      webhookUrl: deps.config.alerts.webhookUrl,
      slackUrl: deps.config.alerts.slackUrl,
    }),
  };
}

export type Activities = ReturnType<typeof createActivities>;
