import type { Collections } from '../src/adapters/store/db';
import { countQueued } from '../src/adapters/store/queue';
import { loadWaba, saveWaba, type WabaSnapshot } from '../src/adapters/store/wabas';
import { emitServiceEvents, wabaEventsOf } from '../src/relay/events';
import type { ForwardTarget } from '../src/relay/targets';
import { requeueLateFailure } from '../src/sending/late-failure';
import type { LateFailureInput, LateFailureResult, LifecycleSettings } from '../workflows/contracts';

/** The lifecycle workflow's store activities: its WABA document, its queue's length, late failures. */
export function createLifecycleActivities(
  c: Collections,
  forwardTargets: readonly ForwardTarget[],
  lifecycle: LifecycleSettings,
) {
  return {
    /** This worker's lifecycle settings (ESCALATION_LEVELS, ON_ABANDON, alert sinks, probes). */
    lifecycleSettings: async (): Promise<LifecycleSettings> => lifecycle,
    /** The WABA's document, or a fresh connected one. */
    loadWaba: (wabaId: string): Promise<WabaSnapshot> => loadWaba(c, wabaId, new Date().toISOString()),
    /**
     * Replaces the WABA's document (only its lifecycle workflow calls this). With forward targets,
     * the change's service events (gate closed or opened, escalated, …) are recorded first, under
     * ids a retry repeats, so none is lost and none is told twice.
     */
    saveWaba: (snapshot: WabaSnapshot): Promise<void> =>
      saveWaba(
        c,
        snapshot,
        forwardTargets.length > 0
          ? (previous) => emitServiceEvents(c, forwardTargets, wabaEventsOf(previous, snapshot))
          : undefined,
      ),
    countQueued: (wabaId: string): Promise<number> => countQueued(c, wabaId),
    /** Queues a message Meta failed after accepting it again, once (src/sending/late-failure.ts). */
    requeueLateFailure: (failure: LateFailureInput): Promise<LateFailureResult> =>
      requeueLateFailure(c, failure, forwardTargets),
  };
}
