import type { Collections } from '../adapters/store/db';
import { countQueued } from '../sending/queue.store';
import { loadWaba, saveWaba, type WabaSnapshot } from './wabas.store';
import { emitServiceEvents, wabaEventsOf } from '../relay/events';
import type { ForwardTarget } from '../relay/targets';
import { requeueLateFailure } from '../sending/late-failure';
import type { LateFailureInput, LateFailureResult, LifecycleSettings } from '../contracts';

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
     * Replaces the WABA's document (only its lifecycle workflow calls this) and returns its queue's
     * length counted after the write, so a run learns both in one marker. With forward targets,
     * the change's service events (gate closed or opened, escalated, …) are recorded first, under
     * ids a retry repeats, so none is lost and none is told twice.
     */
    saveWaba: async (snapshot: WabaSnapshot): Promise<number> => {
      await saveWaba(
        c,
        snapshot,
        forwardTargets.length > 0
          ? (previous) => emitServiceEvents(c, forwardTargets, wabaEventsOf(previous, snapshot))
          : undefined,
      );
      return countQueued(c, snapshot.wabaId);
    },
    countQueued: (wabaId: string): Promise<number> => countQueued(c, wabaId),
    /** Queues a message Meta failed after accepting it again, once (src/sending/late-failure.ts). */
    requeueLateFailure: (failure: LateFailureInput): Promise<LateFailureResult> =>
      requeueLateFailure(c, failure, forwardTargets),
  };
}
