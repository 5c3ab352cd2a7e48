import type { Config } from './config';
import type { GraphClient } from './adapters/graph/client';
import type { Logger } from './logger';
import type { Collections } from './adapters/store/db';
import type { LaunchDeps } from './launch-deps';
import { SharedPacer, type Clock } from './sending/pacing';
import { createAdmission } from './sending/admission';
import { createAlertActivities, type AlertDeps } from './alerts/alerts.activities';
import { createCredentialsActivities } from './lifecycle/credentials.activities';
import { createDrainActivities, type DrainTuning } from './sending/drain.activities';
import { createForwardBacklogActivities } from './relay/forward-backlog.activities';
import { createLifecycleActivities } from './lifecycle/lifecycle.activities';
import { createProbeActivities, type ProbeDeps } from './lifecycle/probe.activities';
import { createSendActivities } from './sending/send.activities';

/** What the activities are built from: real clients, injected by the worker (or a test). */
export interface ActivityDeps {
  c: Collections;
  graph: GraphClient;
  launch: LaunchDeps;
  config: Config;
  logger: Logger;
  /** The shared limiter; one per worker process (built from `c` and the config when absent). */
  pacer?: SharedPacer;
  /** The clock the pacer built here numbers slots on (the worker's shared clock); the process's own when absent. */
  clock?: Clock;
  drainTuning?: Partial<DrainTuning>;
  /** Counts alert deliveries per sink and outcome (the process's metrics). */
  onAlertDelivery?: AlertDeps['onDelivery'];
  /** Counts gate probes by verdict (the process's metrics). */
  onGateProbe?: ProbeDeps['onGateProbe'];
  /** Counts late departures by what took their slot's place (the process's metrics). */
  onLateDeparture?: (remedy: 'swap' | 'claim') => void;
}

/**
 * Builds every activity the workflows call. Workflows import only the type
 * (`proxyActivities<Activities>`), never this code.
 */
export function createActivities(deps: ActivityDeps) {
  const pacer =
    deps.pacer ??
    new SharedPacer(
      deps.c,
      { burst: deps.config.sending.pairLimitBurst, intervalMs: deps.config.sending.pairLimitIntervalMs },
      deps.clock,
      deps.onLateDeparture,
    );
  const admission = createAdmission({
    c: deps.c,
    launch: deps.launch,
    logger: deps.logger,
    forwardTargets: deps.config.forward.targets,
    graph: deps.config.graph,
  });
  return {
    ...createLifecycleActivities(deps.c, deps.config.forward.targets, deps.config.lifecycle, deps.logger),
    ...createProbeActivities(deps),
    ...createCredentialsActivities(deps),
    ...createForwardBacklogActivities(deps),
    ...createSendActivities({ ...deps, pacer, admission }),
    ...createDrainActivities({ ...deps, pacer, tuning: deps.drainTuning }),
    ...createAlertActivities({
      c: deps.c,
      logger: deps.logger,
      alerts: deps.config.alerts,
      ...(deps.onAlertDelivery ? { onDelivery: deps.onAlertDelivery } : {}),
    }),
  };
}

export type Activities = ReturnType<typeof createActivities>;
