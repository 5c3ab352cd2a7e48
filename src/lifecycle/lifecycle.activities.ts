import type { Collections } from '../adapters/store/db';
import { anyQueued, countQueued } from '../sending/queue.store';
import { loadWaba, saveWaba, type WabaSnapshot } from './wabas.store';
import { emitServiceEvents, wabaEventsOf } from '../relay/events';
import type { ForwardTarget } from '../relay/targets';
import { requeueLateFailure } from '../sending/late-failure';
import type { LateFailureInput, LateFailureResult, LifecycleSettings } from '../contracts';
import type { Logger } from '../logger';
import { logAlert } from '../alerts/alerts.activities';
import { composeAlert, type AlertSpec } from './machine';

/** How `saveWaba` reports the queue: its length, or only whether anything waits (1 or 0). */
export type QueueCount = 'exact' | 'any';

/**
 * Alerts of the step a save writes whose `log` line the save writes itself, once it has counted
 * the queue (they show that count): one marker for the save and the lines, where the `log` sink's
 * own local activity would add one per alert. Their other sinks are the run's as usual.
 */
export interface AlertsToLog {
  specs: AlertSpec[];
  /** Entries the run's last `failQueue` failed (texts that show it). */
  failed: number;
  /** When the run raised them (the workflow clock). */
  at: string;
}

/** What `openWaba` answers: everything a lifecycle run needs before its first step. */
export interface OpenedWaba {
  settings: LifecycleSettings;
  waba: WabaSnapshot;
  queued: number;
}

/** The lifecycle workflow's store activities: its WABA document, its queue's length, late failures. */
export function createLifecycleActivities(
  c: Collections,
  forwardTargets: readonly ForwardTarget[],
  lifecycle: LifecycleSettings,
  logger: Logger,
) {
  return {
    /** This worker's lifecycle settings (ESCALATION_LEVELS, ON_ABANDON, alert sinks, probes). */
    lifecycleSettings: async (): Promise<LifecycleSettings> => lifecycle,
    /**
     * What a lifecycle run starts from, in one local activity (one history marker): this worker's
     * settings, the WABA's document (or a fresh connected one) and its queue's length. A connected
     * WABA's queue is not counted here (0): only strays wait in it, and every step that acts on
     * the count counts first (a `persist` or a `countQueued` command comes before any `startDrain`
     * or alert), so this count would only have been shown by the run's view until its first step.
     */
    openWaba: async (wabaId: string): Promise<OpenedWaba> => {
      const waba = await loadWaba(c, wabaId, new Date().toISOString());
      const queued = waba.state === 'connected' ? 0 : await countQueued(c, wabaId);
      return { settings: lifecycle, waba, queued };
    },
    /**
     * Replaces the WABA's document (only its lifecycle workflow calls this) and returns what waits
     * in its queue after the write, so a run learns both in one marker: with `count` `exact` (the
     * default) its length; with `any` only whether anything waits (1 or 0: the queue is read up to
     * its first live entry, not entry by entry). With forward targets, the change's service events
     * (gate closed or opened, escalated, …) are recorded first, under ids a retry repeats, so none
     * is lost and none is told twice. Then the `log` lines of the step's alerts in `log`, if any.
     */
    saveWaba: async (snapshot: WabaSnapshot, count: QueueCount = 'exact', log?: AlertsToLog): Promise<number> => {
      await saveWaba(
        c,
        snapshot,
        forwardTargets.length > 0
          ? (previous) => emitServiceEvents(c, forwardTargets, wabaEventsOf(previous, snapshot))
          : undefined,
      );
      const queued =
        count === 'any' ? ((await anyQueued(c, snapshot.wabaId)) ? 1 : 0) : await countQueued(c, snapshot.wabaId);
      for (const spec of log?.specs ?? []) {
        const raised = { wabaId: snapshot.wabaId, state: snapshot.state, at: log!.at };
        logAlert(logger, composeAlert(spec, { queued, failed: log!.failed }, raised));
      }
      return queued;
    },
    countQueued: (wabaId: string): Promise<number> => countQueued(c, wabaId),
    /** Queues a message Meta failed after accepting it again, once (src/sending/late-failure.ts). */
    requeueLateFailure: (failure: LateFailureInput): Promise<LateFailureResult> =>
      requeueLateFailure(c, failure, forwardTargets),
  };
}
