import type { SendRequest, WabaState } from '../../src/contracts';
import { GATE_VERDICT_REUSE_MS, gateVerdict, reusesApiVerdict } from '../../src/sending/admission';

/** The admission's rules that need no store (src/sending/admission.ts). */
describe('admission', () => {
  const now = Date.parse('2026-01-01T12:00:00Z');
  const req = (extra: { recorded?: true; gateOpenAt?: number } = {}): SendRequest => ({
    messageId: 'm1',
    phoneNumberId: '1',
    to: '15551234567',
    acceptedAt: new Date(now).toISOString(),
    type: 'text',
    text: { body: 'hi' },
    ...extra,
  });

  it("admit's first attempt acts on the API's open verdict only while it is fresh, on the later of the two clocks", () => {
    const open = (msAgo: number) => req({ recorded: true, gateOpenAt: now - msAgo });
    const first = { attempt: 1, scheduledAt: now };
    expect(reusesApiVerdict(open(0), first, now)).toBe(true);
    expect(reusesApiVerdict(open(GATE_VERDICT_REUSE_MS), first, now)).toBe(true);
    expect(reusesApiVerdict(open(GATE_VERDICT_REUSE_MS + 1), first, now)).toBe(false);
    // A retry, a message the API did not record, a verdict the API did not read open: read again.
    expect(reusesApiVerdict(open(0), { attempt: 2, scheduledAt: now }, now)).toBe(false);
    expect(reusesApiVerdict(req({ gateOpenAt: now }), first, now)).toBe(false);
    expect(reusesApiVerdict(req({ recorded: true }), first, now)).toBe(false);
    // A worker clock behind the API's does not stretch the bound while Temporal's is not (and vice versa).
    expect(reusesApiVerdict(open(0), { attempt: 1, scheduledAt: now + GATE_VERDICT_REUSE_MS + 1 }, now)).toBe(false);
    expect(reusesApiVerdict(open(0), first, now + GATE_VERDICT_REUSE_MS + 1)).toBe(false);
  });

  it('a state that closes or refuses the gate decides alone: the hold and the token pause change a verdict only for a connected WABA', () => {
    const states: (WabaState | undefined)[] = [
      undefined,
      'connected',
      'offboarded',
      'draining',
      'reconnect_abandoned',
      'partner_removed',
    ];
    for (const state of states) {
      for (const onAbandon of ['keep', 'fail'] as const) {
        const byState = gateVerdict('W', state, onAbandon);
        if (byState.kind === 'send') continue;
        for (const held of [false, true]) {
          for (const tokenPaused of [false, true]) {
            const full = gateVerdict('W', state, onAbandon, held, tokenPaused);
            // The stray check asks for a stray on `send`, `refuse` or `held`: the same answer from the state alone.
            const stray = (v: typeof full) => v.kind !== 'queue' || v.held === true;
            expect({ state, onAbandon, held, tokenPaused, kind: full.kind, stray: stray(full) }).toEqual({
              state,
              onAbandon,
              held,
              tokenPaused,
              kind: byState.kind,
              stray: stray(byState),
            });
          }
        }
      }
    }
  });
});
