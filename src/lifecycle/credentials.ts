import { graphTokenOf, type Config } from '../config';
import type { Collections, CredentialPauseDoc } from '../adapters/store/db';
import { liftTokenPause, markTokenChecked, pauseToken, readTokenPause } from './credential-pauses.store';
import { wabasWithQueued } from '../sending/queue.store';
import type { GraphClient } from '../adapters/graph/client';
import { isGraphApiError } from '../adapters/graph/errors';
import { deliverLifecycleEvent } from './launch';
import type { LaunchDeps } from '../launch-deps';
import type { Logger } from '../logger';
import type { TokenProbe, TokenRefusal } from '../contracts';
import { reportTokenRefusal } from '../sending/launch';

/**
 * Credentials are not a WABA's state. When Meta refuses a Graph API token (codes 0, 190), sending
 * with that token is paused for every WABA that uses it (`credential_pauses`, by the token's
 * source), the sends that met it stay queued, and the token's one credentials workflow
 * (`credentials/<source>`) raises one alert, probes Meta with the token every probe interval, and
 * once a probe succeeds lifts the pause and asks every paused WABA with a queue to drain it. No
 * WABA's gate closes for a bad token, so none is escalated or abandoned for it.
 *
 * The gate (src/sending/admission.ts) reads the pause; it trusts it only while the workflow keeps
 * checking it (`PAUSE_MAX_SILENCE_MS` after its last check): a pause nobody watches any more opens
 * by itself (a wrong "open" costs one refused send, which pauses again).
 */

/** A pause whose workflow has not checked it for this long (plus one probe interval) is ignored. */
export const PAUSE_MAX_SILENCE_MS = 5 * 60_000;

/** The probe interval of tokens when gate probes are off (`GATE_PROBE_INTERVAL=off`). */
export const TOKEN_PROBE_DEFAULT_MS = 60_000;

/** True while a token pause is in force (watched by its workflow). */
export function pauseInForce(
  pause: { since: string; checkedAt?: string } | null,
  probeIntervalMs: number | undefined,
  now = Date.now(),
): boolean {
  if (!pause) return false;
  const last = Date.parse(pause.checkedAt ?? pause.since);
  return now - last < PAUSE_MAX_SILENCE_MS + (probeIntervalMs || TOKEN_PROBE_DEFAULT_MS);
}

/** The pause in force on this WABA's token, with the token's source; null when it may send. */
export async function tokenPauseFor(
  c: Collections,
  graph: Config['graph'],
  wabaId: string,
  probeIntervalMs: number | undefined,
): Promise<{ source: string; pause: CredentialPauseDoc } | null> {
  const { source } = graphTokenOf(graph, wabaId);
  const pause = await readTokenPause(c, source);
  return pause && pauseInForce(pause, probeIntervalMs) ? { source, pause } : null;
}

/**
 * A send met Meta's refusal of its token: records the pause (insert-only; the first refusal wins)
 * and tells the token's credentials workflow (signal-with-start: one run per token at a time, a
 * refusal after a run lifted the pause reaches the next one). Throws when Temporal cannot be
 * reached: the caller's activity is retried and comes back here.
 */
export async function pauseForRefusedToken(
  deps: { c: Collections; launch: LaunchDeps; graph: Config['graph']; logger: Logger },
  send: { wabaId: string; phoneNumberId: string; detail: string },
): Promise<void> {
  const { source } = graphTokenOf(deps.graph, send.wabaId);
  const at = new Date().toISOString();
  const refusal: TokenRefusal = { source, ...send, at };
  if (await pauseToken(deps.c, { _id: source, since: at, ...send })) {
    deps.logger.warn(
      { wabaId: send.wabaId, tokenSource: source },
      'Meta refused the token: sending paused for every WABA using it',
    );
  } else {
    // Paused already: this refusal is fresh evidence, so the gate trusts the pause again even if
    // its workflow had stopped checking it (a blind `$set` of one field: no read-modify-write).
    await markTokenChecked(deps.c, source, at);
  }
  await reportTokenRefusal(deps.launch, refusal);
}

/** Probes Meta with the token of `wabaId`: a read of the number's node. */
export async function probeToken(graph: GraphClient, wabaId: string, phoneNumberId: string): Promise<TokenProbe> {
  try {
    const h = await graph.probePhoneNumber(phoneNumberId, wabaId);
    return { works: true, detail: `${phoneNumberId}: ${h.summary}` };
  } catch (err) {
    const text = `${phoneNumberId}: Meta code ${(err as { code?: number }).code ?? '?'}: ${(err as Error).message}`;
    if (isGraphApiError(err) && err.reason === 'auth_failed') return { works: false, detail: text };
    return { works: undefined, detail: text };
  }
}

/**
 * Lifts the token's pause and asks every WABA using the token that has queued messages to drain
 * them (a `QUEUE_STRAY` per WABA: a connected one drains now, a closed one at its reopening).
 * Returns how many WABAs were asked. Safe to retry (a repeated key is ignored by the workflow).
 */
export async function resumeToken(
  deps: { c: Collections; launch: LaunchDeps; graph: Config['graph'] },
  source: string,
  resumedAt: string,
): Promise<number> {
  await liftTokenPause(deps.c, source);
  const using = (await wabasWithQueued(deps.c)).filter((w) => graphTokenOf(deps.graph, w).source === source);
  for (const wabaId of using) {
    await deliverLifecycleEvent(deps.launch, {
      key: `stray:token:${source}:${resumedAt}`,
      type: 'QUEUE_STRAY',
      wabaId,
      receivedAt: resumedAt,
      source: 'send',
      detail: `the token from ${source} works again: draining what waited for it`,
    });
  }
  return using.length;
}
