import { Context } from '@temporalio/activity';
import type { Config } from '../config';
import type { GraphClient } from '../adapters/graph/client';
import type { Collections } from '../adapters/store/db';
import { listPhoneNumbers } from './phone-numbers.store';
import { reportGateProbe } from './launch';
import type { LaunchDeps } from '../launch-deps';
import type { Logger } from '../logger';
import type { GateProbeSweepInput, GateProbeSweepResult, ProbeResult } from '../contracts';
import { PROBE_SWEEP_IDLE_MS, probeDue, probeSweepPeriodMs, sweepPeriodAfterRead } from './machine';

/**
 * Gate probes: what is read, when, and what a verdict does.
 *
 * Probes: while `offboarded`, every registered number's node (`health_status`, `status`,
 * `platform_type`, `is_on_biz_app`) is read (`probeGate`); a number is usable when its own
 * `PHONE_NUMBER` health entity can send, it is `CONNECTED` and on `CLOUD_API` (`readPhoneHealth`:
 * the overall `can_send_message` also counts the WABA's, business's and app's entities, and an app
 * calling error makes it `BLOCKED` while messages go; those errors are recorded in the probe's
 * detail, not held against the number). It is read `GATE_PROBE_INTERVAL` after the closure, then
 * each time the closure's age doubles (1, 2, 4, 8 … minutes) up to every `GATE_PROBE_MAX_INTERVAL`
 * (the fixed schedule `probePointAfter`), and before each escalation level: reconnections come
 * within minutes, and 10,000 waiting WABAs cost under 3 probes a second at the 1 h cap instead of
 * 167 at a fixed minute. The probes between levels are made by the deployment's gate probe sweep
 * (`src/lifecycle/gate-probes.workflow.ts`, id `gate-probes/<task queue>`, started by every worker
 * at start-up, one run at a time, its first task one sweep period later): every
 * `probeSweepPeriodMs` (half the interval, 1–30 s; stretched by `sweepPeriodAfterRead` so that the
 * pass's read takes at most 1/80 of the time, up to 10 min: FerretDB decodes every WABA document
 * for it, about 3.8 s of its CPU at 10,000) one `sweepGateProbes` activity reads the offboarded
 * WABAs, probes those with a point since the last pass (`probeDue`: no memory of earlier probes is
 * needed, and a late pass probes once for all it missed), and signals `gateProbed` only to the
 * runs whose probe said usable; the run applies it as its own. So a WABA Meta keeps refusing costs
 * no workflow task at all between levels (a timer, an activity and two workflow tasks per probe in
 * each run cost about 108 ms of CPU across the 2-core stack per probe: `bench:lifecycle`, 3,000
 * paused). A probe before an escalation level that fails counts as `unknown`. Usable after an
 * `offboarded` closure: Meta's webhook was lost, reopen (`reconnected_by_probe`, alert "Meta's
 * webhook never arrived"). Usable after a `send_error` / `failed_status` closure: reopen once the
 * closure is `GATE_PROBE_GRACE` old (`probe_after_grace`). Unusable or unknown (no answer, bad
 * token, no number): nothing changes and nothing is written (the worker logs each probe with the
 * WABA id, counts it by verdict in `coexist_relay_gate_probes_total`, and the sweep's current
 * details count them).
 */

/** Probes of one sweep pass in flight at once (each a few point reads and one Graph read per number). */
const SWEEP_CONCURRENCY = 16;

export interface ProbeDeps {
  c: Collections;
  graph: GraphClient;
  launch: LaunchDeps;
  config: Pick<Config, 'lifecycle'>;
  logger: Logger;
  /** Counts every probe by its verdict (the process's metrics). */
  onGateProbe?: (verdict: ProbeResult['verdict']) => void;
}

/** The send gate's probe of Meta: what the phone-number nodes of a WABA say now. */
export function createProbeActivities(deps: ProbeDeps) {
  const { c, graph, logger } = deps;

  /**
   * Reads every registered number of the WABA (`probePhoneNumber`). `usable` when all of them can
   * send, `unusable` when one cannot, `unknown` when a read failed (token, network, Meta) or the
   * WABA has no registered number. Never throws for Meta's answers: a failed probe is `unknown`
   * and the gate stays as it is. Idempotent (reads only).
   */
  async function probeGate(input: { wabaId: string }): Promise<ProbeResult> {
    const { wabaId } = input;
    const numbers = await listPhoneNumbers(c, wabaId);
    if (numbers.length === 0) {
      deps.onGateProbe?.('unknown');
      return { verdict: 'unknown', detail: 'no registered phone number to probe' };
    }
    const readings = await Promise.all(
      numbers.map(async (n) => {
        try {
          const h = await graph.probePhoneNumber(n._id, wabaId);
          return { id: n._id, usable: h.usable, text: `${n._id}: ${h.summary}` };
        } catch (err) {
          const e = err as { code?: number; message?: string };
          return {
            id: n._id,
            usable: undefined,
            text: `${n._id}: probe failed (Meta code ${e.code ?? '?'}: ${e.message ?? String(err)})`,
          };
        }
      }),
    );
    const detail = readings.map((r) => r.text).join('; ');
    const verdict = readings.some((r) => r.usable === false)
      ? 'unusable'
      : readings.some((r) => r.usable === undefined)
        ? 'unknown'
        : 'usable';
    logger.info({ wabaId, verdict, detail }, 'gate probe');
    deps.onGateProbe?.(verdict);
    return { verdict, detail };
  }

  return {
    probeGate,

    /**
     * One pass of the gate probe sweep: reads the offboarded WABAs (one read of `wabas` by state),
     * probes each whose probe point (`probeDue`, the schedule of src/lifecycle/machine.ts)
     * falls in (`fromMs`, `toMs`], and reports the usable ones to their runs, which decide (a
     * closure by a send error waits for its grace period, a run that moved on ignores it). Unusable
     * and unknown probes change nothing and wake no workflow. Safe to retry: a repeated probe is a
     * read, a repeated report is applied once (the run reopens only while offboarded).
     * `nextInMs`: when the next pass is due (`sweepPeriodAfterRead`: the period, longer when the read is slow).
     */
    async sweepGateProbes(input: GateProbeSweepInput): Promise<GateProbeSweepResult & { nextInMs: number }> {
      const settings = deps.config.lifecycle;
      const periodMs = probeSweepPeriodMs(settings);
      const result: GateProbeSweepResult = { offboarded: 0, probed: 0, usable: 0, unreported: 0 };
      if (periodMs === undefined) return { ...result, nextInMs: PROBE_SWEEP_IDLE_MS };
      const ctx = Context.current();
      const readStart = Date.now();
      const paused = await c.wabas.find({ state: 'offboarded' }, { projection: { _id: 1, since: 1 } }).toArray();
      const readMs = Date.now() - readStart;
      result.offboarded = paused.length;
      const due = paused.filter((w) => probeDue(Date.parse(w.since), settings, input.fromMs, input.toMs));
      let next = 0;
      const lane = async (): Promise<void> => {
        while (next < due.length) {
          const wabaId = due[next++]!._id;
          const probe = await probeGate({ wabaId });
          result.probed++;
          if (probe.verdict === 'usable') {
            result.usable++;
            if (!(await reportGateProbe(deps.launch, wabaId, probe))) result.unreported++;
          }
          ctx.heartbeat(result);
        }
      };
      await Promise.all(Array.from({ length: Math.min(SWEEP_CONCURRENCY, due.length) }, lane));
      const nextInMs = sweepPeriodAfterRead(periodMs, readMs);
      if (result.probed > 0 || nextInMs > periodMs)
        logger.info({ ...input, ...result, readMs, nextInMs }, 'gate probe sweep');
      return { ...result, nextInMs };
    },
  };
}
