import type { Config } from '../config';
import type { Collections } from '../adapters/store/db';
import { targetBacklog } from './forwards.store';
import { backlogTooOld } from './forwarder';
import type { ForwardBacklogCheck } from '../contracts';

/** The forward backlog workflow's activity: a target's backlog now, judged by the forwarder's rule (`backlogTooOld`). */
export function createForwardBacklogActivities(deps: { c: Collections; config: Config }) {
  return {
    async forwardBacklog(input: { target: string }): Promise<ForwardBacklogCheck> {
      const b = await targetBacklog(deps.c, input.target, Date.now());
      return {
        target: input.target,
        oldestAgeMs: b.ageMs,
        tooOld: backlogTooOld(b.ageMs, deps.config.forward),
        pending: b.pending,
        ...(b.oldest ? { deliveryId: b.oldest.deliveryId } : {}),
        ...(b.oldest?.wabaIds[0] ? { wabaId: b.oldest.wabaIds[0] } : {}),
        alertAfterMs: deps.config.forward.backlogAlertMs,
      };
    },
  };
}
