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
