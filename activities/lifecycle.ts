import type { Collections } from '../src/adapters/store/db';
import { countQueued } from '../src/adapters/store/queue';
import { loadWaba, saveWaba, type WabaSnapshot } from '../src/adapters/store/wabas';

/** The lifecycle workflow's store activities: its WABA document and its queue's length. */
export function createLifecycleActivities(c: Collections) {
  return {
    /** The WABA's document, or a fresh connected one. */
    loadWaba: (wabaId: string): Promise<WabaSnapshot> => loadWaba(c, wabaId, new Date().toISOString()),
    /** Replaces the WABA's document (only its lifecycle workflow calls this). */
    saveWaba: (snapshot: WabaSnapshot): Promise<void> => saveWaba(c, snapshot),
    countQueued: (wabaId: string): Promise<number> => countQueued(c, wabaId),
  };
}
