import { insertFacts, type Collections, type GateHoldDoc } from '../adapters/store/db';

/**
 * Why gate holds exist: the gate is closed at the ack. A burst of offboardings takes the relay minutes to
 * hand over on 2 cores (about 12 signal-with-starts a second), and until a WABA's workflow applies
 * its offboarding its document still says `connected`. So the sink also inserts `gate_holds` `{
 * _id: wabaId, eventKey, type, receivedAt }` before the 200 (insert-only; a WABA already held
 * stays held), and `gateVerdict` (the one gate) reads the hold beside the WABA's state: a
 * connected or unknown WABA with a hold younger than 5 minutes queues instead of sending. The
 * relay deletes the hold by `_id` right after handing the closing event over (or on finding it
 * handed over already, a redelivery), so the workflow's state decides again from then on; the
 * workflow stays the only writer of `wabas`. What can go wrong is bounded and self-correcting:
 * between that delete and the workflow applying the event a send may leave (it fails "account
 * unusable" and closes the gate again, as before holds existed); a hold whose delete failed is
 * ignored after 5 minutes (a wrong "closed" is the costlier mistake). A message queued on a hold
 * alone is also recorded as a `QUEUE_STRAY` outbox delivery (`kind: 'stray'`, `_id` after the
 * closing delivery's, so the relay hands it over after the closure): when the workflow ignores the
 * offboarding (stale: older than the last reconnection) and stays connected, that stray starts a
 * drain that sends it; when the offboarding applies, it is a no-op and the reconnection's drain
 * sends it.
 */

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
