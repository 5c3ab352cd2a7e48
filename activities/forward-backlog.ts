import type { Config } from '../src/config';
import type { Collections } from '../src/adapters/store/db';
import { targetBacklog } from '../src/adapters/store/forwards';
import type { ForwardBacklogCheck } from '../workflows/contracts';

/** The forward backlog workflow's activity: a target's backlog now, with this worker's alert age. */
export function createForwardBacklogActivities(deps: { c: Collections; config: Config }) {
  return {
    async forwardBacklog(input: { target: string }): Promise<ForwardBacklogCheck> {
      const b = await targetBacklog(deps.c, input.target, Date.now());
      return {
        target: input.target,
        oldestAgeMs: b.oldestAgeMs,
        pending: b.pending,
        ...(b.oldest ? { deliveryId: b.oldest.deliveryId } : {}),
        ...(b.oldest?.wabaIds[0] ? { wabaId: b.oldest.wabaIds[0] } : {}),
        alertAfterMs: deps.config.forward.backlogAlertMs,
      };
    },
  };
}
