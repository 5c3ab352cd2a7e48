import { continueAsNew, proxyActivities, setCurrentDetails, sleep, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { GateProbeSweepCarry, GateProbeSweepResult } from '../contracts';

const sweeper = proxyActivities<Pick<Activities, 'sweepGateProbes'>>({
  startToCloseTimeout: '15 minutes',
  heartbeatTimeout: '1 minute',
  retry: { initialInterval: '1 second', maximumInterval: '30 seconds', maximumAttempts: 3 },
});

/** Passes per run before it continues as new (a pass is about ten history events). */
const PASSES_PER_RUN = 300;

/** Counts since the sweep started (a pass's `offboarded` is a reading, not a count to add up). */
type SweepTotals = Omit<GateProbeSweepResult, 'offboarded'>;

/**
 * The deployment's gate probe sweep (`gate-probes/<task queue>`, started by every worker at
 * start-up; one run at a time). While a WABA is offboarded its gate is probed on a fixed schedule
 * (`probePointAfter` in ./lifecycle/machine.ts: 1, 2, 4 … minutes after the closure, then every
 * GATE_PROBE_MAX_INTERVAL). This run looks for due probes every `probeSweepPeriodMs` (half the
 * interval, 1–30 s): one activity probes every WABA with a point in the window since the last
 * pass, and signals only the usable ones to their lifecycle runs. So a paused WABA costs no
 * workflow task of its own while Meta keeps saying it cannot send; 10,000 paused WABAs cost one
 * pass per period, not 10,000 timers. A failed pass leaves its window to the next one.
 */
export async function gateProbeSweepWorkflow(carry: GateProbeSweepCarry = {}): Promise<never> {
  // A new sweep's first window opens when it was started (its first task comes a period later).
  let fromMs = carry.fromMs ?? workflowInfo().startTime.getTime();
  let passes = carry.passes ?? 0;
  const totals: SweepTotals = carry.totals ?? { probed: 0, usable: 0, unreported: 0 };
  // Until a pass says otherwise (a failed pass keeps the last period).
  let nextInMs = 30_000;
  for (let i = 0; i < PASSES_PER_RUN && !workflowInfo().continueAsNewSuggested; i++) {
    const toMs = Date.now();
    try {
      const pass = await sweeper.sweepGateProbes({ fromMs, toMs });
      fromMs = toMs;
      passes++;
      nextInMs = pass.nextInMs;
      totals.probed += pass.probed;
      totals.usable += pass.usable;
      totals.unreported += pass.unreported;
      setCurrentDetails(
        `Pass ${passes} at ${new Date(toMs).toISOString()}: ${pass.offboarded} offboarded, ${pass.probed} probed, ` +
          `${pass.usable} usable. Since this sweep started: ${totals.probed} probed, ${totals.usable} usable ` +
          `(${totals.unreported} of those had no open run).`,
      );
    } catch {
      // The activity's retries are spent (the database or Meta is down): the next pass covers this window too.
    }
    await sleep(nextInMs);
  }
  return continueAsNew<typeof gateProbeSweepWorkflow>({ fromMs, passes, totals });
}
