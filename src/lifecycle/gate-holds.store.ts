import { insertFacts, type Collections, type GateHoldDoc } from '../adapters/store/db';

/**
 * Gate holds (`gate_holds`, see `GateHoldDoc`): a closure recorded at the webhook's ack, before the
 * lifecycle workflow has it. Insert-only by the sink, point reads by the gate, deletes by `_id` by
 * the relay: no read-modify-write, so it is safe on FerretDB with any number of processes.
 */

/** Records holds (one insert; a WABA already held stays held by its first event). */
export function holdGates(c: Collections, holds: GateHoldDoc[]): Promise<void> {
  return insertFacts(c.gateHolds, holds);
}

/** The WABA's hold, or null (a point read by `_id`). */
export function readGateHold(c: Collections, wabaId: string): Promise<GateHoldDoc | null> {
  return c.gateHolds.findOne({ _id: wabaId });
}

/** Removes the WABA's hold once its closing event is handed over (idempotent; by exact `_id`). */
export async function releaseGateHold(c: Collections, wabaId: string): Promise<void> {
  await c.gateHolds.deleteOne({ _id: wabaId });
}
