import type { GraphClient } from '../src/adapters/graph/client';
import type { Collections } from '../src/adapters/store/db';
import { listPhoneNumbers } from '../src/adapters/store/phone-numbers';
import type { Logger } from '../src/logger';
import type { ProbeResult } from '../workflows/contracts';

/** The send gate's probe of Meta: what the phone-number nodes of a WABA say now. */
export function createProbeActivities(deps: { c: Collections; graph: GraphClient; logger: Logger }) {
  const { c, graph, logger } = deps;
  return {
    /**
     * Reads every registered number of the WABA (`probePhoneNumber`). `usable` when all of them can
     * send, `unusable` when one cannot, `unknown` when a read failed (token, network, Meta) or the
     * WABA has no registered number. Never throws for Meta's answers: a failed probe is `unknown`
     * and the gate stays as it is. Idempotent (reads only).
     */
    async probeGate(input: { wabaId: string }): Promise<ProbeResult> {
      const { wabaId } = input;
      const numbers = await listPhoneNumbers(c, wabaId);
      if (numbers.length === 0) return { verdict: 'unknown', detail: 'no registered phone number to probe' };
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
      return { verdict, detail };
    },
  };
}
