import { graphTokenOf } from '../../src/config';
import { gateVerdict } from '../../src/sending/admission';
import { PAUSE_MAX_SILENCE_MS, pauseInForce } from '../../src/lifecycle/credentials';

/** The token pause (src/lifecycle/credentials.ts): which token a WABA uses, when a pause holds, what the gate says. */
describe('token pauses', () => {
  const graph = { baseUrl: '', version: 'v23.0', token: 'shared', tokensByWaba: { W2: 'own' }, timeoutMs: 1_000 };

  it('a WABA uses its own token when it has one, else the shared one; the source names it, never the token', () => {
    expect(graphTokenOf(graph, 'W1')).toEqual({ token: 'shared', source: 'GRAPH_API_TOKEN' });
    expect(graphTokenOf(graph, 'W2')).toEqual({ token: 'own', source: 'GRAPH_API_TOKENS_BY_WABA[W2]' });
  });

  it('a pause holds while its workflow checks it, and is ignored once nobody has for too long', () => {
    const now = Date.parse('2026-01-01T12:00:00Z');
    const at = (msAgo: number) => new Date(now - msAgo).toISOString();
    expect(pauseInForce(null, 3_000, now)).toBe(false);
    expect(pauseInForce({ since: at(10_000) }, 3_000, now)).toBe(true);
    expect(pauseInForce({ since: at(PAUSE_MAX_SILENCE_MS + 4_000) }, 3_000, now)).toBe(false);
    expect(pauseInForce({ since: at(PAUSE_MAX_SILENCE_MS * 3), checkedAt: at(2_000) }, 3_000, now)).toBe(true);
    // Probes off: a minute's interval is assumed.
    expect(pauseInForce({ since: at(PAUSE_MAX_SILENCE_MS + 30_000) }, undefined, now)).toBe(true);
  });

  it('the gate queues a paused token WABA that would send, and still refuses what it refuses', () => {
    expect(gateVerdict('W1', 'connected', 'keep', false, true)).toEqual({ kind: 'queue', tokenPaused: true });
    expect(gateVerdict('W1', undefined, 'keep', false, true)).toEqual({ kind: 'queue', tokenPaused: true });
    expect(gateVerdict('W1', 'connected', 'keep', false, false)).toEqual({ kind: 'send' });
    expect(gateVerdict('W1', 'partner_removed', 'keep', false, true).kind).toBe('refuse');
  });
});
