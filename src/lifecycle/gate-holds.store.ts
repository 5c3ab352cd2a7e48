import { insertOnce, type Collections, type GateHoldDoc } from '../adapters/store/db';
import type { WabaRecord } from '../contracts';

/**
 * Why gate holds exist: the gate is closed at the ack. A burst of offboardings takes the relay minutes to
 * hand over on 2 cores (about 12 signal-with-starts a second), and until a WABA's workflow applies
 * its offboarding its document still says `connected`. So the sink also writes the WABA's
 * `gate_holds` document `{ _id: wabaId, eventKey, type, receivedAt }` before the 200, and
 * `gateVerdict` (the one gate) reads the hold beside the WABA's state: a connected or unknown WABA
 * whose hold counts (`holdCounts`) queues instead of sending.
 *
 * A hold stops counting once the WABA's lifecycle workflow has *handled* its event, applied or not:
 * the machine records the last closing event it handled on the WABA document (`closingHandled`,
 * saved with the step), and a hold for that event, or one received no later than it, no longer
 * counts. So nothing deletes a hold on the way (the workflow stays the only writer of `wabas`, the
 * sink the only writer of holds), and the gate never reads open between the relay's hand-over and
 * the workflow's first task (5–6 s under a 2,000-WABA burst). A stale offboarding the workflow
 * ignores releases its hold the same way (no wrong "closed" for the hold's 5 minutes). A hold older
 * than `GATE_HOLD_MAX_MS` is ignored whatever the document says (a wrong "closed" is the costlier
 * mistake). A message queued on a hold alone is also recorded as a `QUEUE_STRAY` outbox delivery
 * (`kind: 'stray'`, `_id` after the closing delivery's, so the relay hands it over after the
 * closure): when the workflow ignores the offboarding (stale: older than the last reconnection) and
 * stays connected, that stray starts a drain that sends it; when the offboarding applies, it is a
 * no-op and the reconnection's drain sends it.
 *
 * The relay deletes a hold only for a redelivery of an event it handed over already (the workflow
 * will not see it again, so nothing would release the hold the redelivery wrote), and only if the
 * hold is still that event's.
 */

/**
 * A hold older than this is ignored: the relay hands events over in seconds and the workflow
 * handles them in seconds more, so an older one is left over, and trusting it would be the silent
 * outage of a wrong "closed".
 */
export const GATE_HOLD_MAX_MS = 5 * 60_000;

/**
 * Whether a WABA's hold still closes its gate: fresh (younger than `GATE_HOLD_MAX_MS` at `now`),
 * and its event not handled yet by the WABA's workflow: `handled` (the WABA document's
 * `closingHandled`) is neither that event nor one received at or after it. (Receipt times are
 * the sinks' clocks; equal or skewed times err towards open, which the next send corrects.)
 */
export function holdCounts(
  hold: Pick<GateHoldDoc, 'eventKey' | 'receivedAt'>,
  handled: WabaRecord['closingHandled'],
  now: number,
): boolean {
  if (!(now - Date.parse(hold.receivedAt) < GATE_HOLD_MAX_MS)) return false;
  return !handled || (handled.key !== hold.eventKey && handled.receivedAt < hold.receivedAt);
}

/**
 * Whether `hold` may replace the stored one: the stored hold was received earlier and is not for
 * an event Meta sent later (a redelivery of an older closure, or a late one, never displaces a
 * newer closure's hold; whatever the workflow makes of the newer one, the older one changes
 * nothing).
 */
function replaces(hold: GateHoldDoc, stored: GateHoldDoc): boolean {
  if (!(stored.receivedAt < hold.receivedAt)) return false;
  return hold.metaTime === undefined || stored.metaTime === undefined || stored.metaTime <= hold.metaTime;
}

/**
 * Records holds: per WABA one read of its hold by `_id`, then one write by exact `_id` (an insert
 * for a WABA never held, a replace of a hold this one `replaces`, nothing otherwise). So a hold the
 * workflow has handled is replaced by the next closure's and a WABA never held gets its first. Not
 * one conditional upsert (`{ _id, receivedAt: { $lt } }`): FerretDB answers only a filter that is
 * exactly `{ _id }` from an index, and holds are never deleted, so that filter read every hold at
 * each ack (measured: p50 0.93 s per upsert with 2,000 WABAs held). Two sinks writing the same
 * WABA's hold in the same instant may leave the earlier receipt (on MongoDB too now; on FerretDB
 * the upsert read, then wrote, anyway): the gate may then open once that one is handled and
 * before the later one is, which the next send corrects.
 */
export async function holdGates(c: Collections, holds: GateHoldDoc[]): Promise<void> {
  await Promise.all(
    holds.map(async (hold) => {
      const stored = await c.gateHolds.findOne({ _id: hold._id });
      if (!stored) {
        if (await insertOnce(c.gateHolds, hold)) return;
        const raced = await c.gateHolds.findOne({ _id: hold._id }); // another sink's, just written
        if (!raced || !replaces(hold, raced)) return;
      } else if (!replaces(hold, stored)) return;
      await c.gateHolds.replaceOne({ _id: hold._id }, hold);
    }),
  );
}

/** The WABA's hold, or null (a point read by `_id`). */
export function readGateHold(c: Collections, wabaId: string): Promise<GateHoldDoc | null> {
  return c.gateHolds.findOne({ _id: wabaId });
}

/**
 * Removes the WABA's hold if it is still `eventKey`'s (by `_id`): the relay's answer to a
 * redelivery of an event it handed over already.
 */
export async function releaseGateHold(c: Collections, wabaId: string, eventKey: string): Promise<void> {
  // Read, then delete by exact `_id`: a filter with `eventKey` beside `_id` reads every hold on FerretDB.
  if ((await c.gateHolds.findOne({ _id: wabaId }, { projection: { eventKey: 1 } }))?.eventKey !== eventKey) return;
  await c.gateHolds.deleteOne({ _id: wabaId });
}
