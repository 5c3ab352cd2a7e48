import type { Collections, SendAttemptDoc } from '../adapters/store/db';
import {
  claimPost,
  insertAttempt,
  insertConfirmation,
  readAttempt,
  readPostClaim,
  readConfirmation,
  updateAttempt,
} from './attempts.store';
import { markInDoubt, sendKey } from './messages.store';
import { findSettlement } from './queue.store';
import type { GraphClient, SendMessageInput } from '../adapters/graph/client';
import type { Logger } from '../logger';
import { emitServiceEvents, messageStepEvent } from '../relay/events';
import type { ForwardTarget } from '../relay/targets';
import { attemptSend, type Attempt } from './attempt';
import { decideForWindow, learnWindowClosed, readWindowState } from './window';
import { REASONS, type TemplateBody } from '../contracts';

/**
 * Concurrent senders: every POST is claimed.
 *
 * Two senders can read the same entry at once (an `admit` attempt that overran its timeout beside
 * the next one, a drain beside it), so every POST is claimed by an insert on a unique key: the
 * entry's own insert for the first, `send_claims` `<send key>/<n>` for POST `n` (a retry after a
 * refusal, the one resend). Only the winner records and POSTs; the other waits and reads again. A
 * claim the entry still does not show a minute later was abandoned before its POST and is passed
 * over. An `admit` attempt also POSTs no later than its start-to-close timeout minus
 * `GRAPH_API_TIMEOUT_MS` minus 5 s, so its POST is answered before Temporal can start the next
 * attempt. `settleDirect` (the send workflow gave up) settles a message whose entry or a status
 * holds a wamid as `sent`.
 */

/**
 * The per-attempt ledger (`send_attempts`): the one owner of "may this message be POSTed to the
 * Cloud API (again)?". Every sender (admit, the drain) calls `beginSend` right before a POST and
 * records its answer: the drain with `endSend`; the direct send by the message's settlement, which
 * it writes at once for a definite answer (`answerSettled`; `endSend` only for the answers that
 * are tried again or queued). A POST whose answer never got recorded (timeout, lost connection,
 * `GraphApiError.mayHaveBeenSent`, a crash) leaves the message **in doubt**: it may have gone out.
 * Sends are tagged with the message id (`biz_opaque_callback_data`), so a status webhook naming it
 * (`confirmFromStatuses`, called by ingest) settles it as sent. Without one within the grace
 * period, `IN_DOUBT_POLICY` decides: `resend_after` sends it once more (at-least-once: at most one
 * duplicate), `fail` fails it (at-most-once). Either way a message is never POSTed again after a
 * second lost answer.
 *
 * Two senders may read the same entry at once (an `admit` attempt that overran its timeout and
 * the next one, a drain beside it). Every POST is therefore claimed by an insert on a unique key
 * (the entry itself for the first, `send_claims` `<key>/<n>` for POST `n`), atomic on MongoDB and
 * FerretDB alike: of two senders only one POSTs again; the other waits and reads the entry anew.
 */

/** How long a sender that lost the claim of a POST waits before it reads the entry again. */
const CLAIM_LOST_WAIT_MS = 1_000;
/**
 * A claim the entry still does not show this long after it was taken was abandoned before its
 * POST (its holder records the POST in the entry right after the claim, before POSTing).
 */
const CLAIM_ABANDONED_MS = 60_000;

/**
 * Claims the entry's next POST: its number, or undefined when another sender holds it. Past an
 * abandoned claim (see `CLAIM_ABANDONED_MS`) it takes the following number, so a sender that died
 * between its claim and its record cannot stop the message for good.
 */
async function claimNextPost(c: Collections, key: string, doc: SendAttemptDoc): Promise<number | undefined> {
  for (let n = doc.tries + 1; n <= doc.tries + 3; n++) {
    if (await claimPost(c, key, n)) return n;
    const [claim, now] = await Promise.all([readPostClaim(c, key, n), readAttempt(c, key)]);
    const abandoned = claim && Date.now() - claim.storedAt.getTime() > CLAIM_ABANDONED_MS;
    if (!abandoned || !now || now.tries >= n) return undefined;
  }
  return undefined;
}

export interface InDoubtPolicy {
  policy: 'resend_after' | 'fail';
  graceMs: number;
}

export type BeginSend =
  /** POST now (the ledger says a POST is in flight). */
  | { kind: 'send'; resend: boolean }
  /** Meta already accepted it (answer recorded, or a status webhook confirmed it): do not POST. */
  | { kind: 'sent'; wamid: string }
  /** In doubt: ask again after `ms` (a status webhook may still confirm it). */
  | { kind: 'wait'; ms: number }
  /** In doubt and the policy (or the one resend) says never to POST it again. */
  | { kind: 'give_up' };

/** Told when a message is first found in doubt (the `message.in_doubt` service event). */
export type OnInDoubt = (at: string) => Promise<void>;

/**
 * Decides, from the ledger, whether this message may be POSTed now; records the POST when it may.
 * `round` 2 is the send after Meta failed the first one late: its own ledger entry (`sendKey`).
 */
export async function beginSend(
  c: Collections,
  messageId: string,
  policy: InDoubtPolicy,
  logger?: Logger,
  onInDoubt?: OnInDoubt,
  round?: number,
): Promise<BeginSend> {
  const now = Date.now();
  const key = sendKey(messageId, round);
  // The first POST is claimed by inserting the entry: for a message never sent (nearly every call)
  // that is the one statement; an entry already there (a retry, an in-doubt send) is read after
  // the insert fails, instead of before every insert.
  const first = { _id: key, messageId, ...(round && round > 1 ? { round } : {}) };
  if (await insertAttempt(c, { ...first, tries: 1, state: 'in_flight', startedAt: now, resends: 0 }))
    return { kind: 'send', resend: false };
  const doc = await readAttempt(c, key);
  if (!doc) return { kind: 'wait', ms: 1_000 };
  if (doc.wamid) return { kind: 'sent', wamid: doc.wamid };
  if (doc.state === 'answered') {
    const n = await claimNextPost(c, key, doc);
    if (n === undefined) return { kind: 'wait', ms: CLAIM_LOST_WAIT_MS };
    await updateAttempt(c, key, { tries: n, state: 'in_flight', startedAt: now });
    return { kind: 'send', resend: false };
  }
  // In flight with no answer recorded: the previous POST may have reached Meta.
  const confirmed = await readConfirmation(c, key);
  if (confirmed) {
    await updateAttempt(c, key, { state: 'answered', wamid: confirmed.wamid, confirmedBy: 'status' });
    return { kind: 'sent', wamid: confirmed.wamid };
  }
  if (doc.inDoubtAt === undefined) {
    logger?.warn({ messageId, tries: doc.tries }, 'send in doubt: its answer was lost');
    await onInDoubt?.(new Date(now).toISOString()); // before the mark: a failed emit is redone by the retry
    await Promise.all([
      updateAttempt(c, key, { inDoubtAt: now }),
      markInDoubt(c, messageId, new Date(now).toISOString()),
    ]);
  }
  const waited = now - doc.startedAt;
  if (waited < policy.graceMs) return { kind: 'wait', ms: policy.graceMs - waited };
  if (policy.policy === 'fail' || doc.resends >= 1) {
    logger?.warn({ messageId, policy: policy.policy, resends: doc.resends }, 'in-doubt send not sent again');
    return { kind: 'give_up' };
  }
  const n = await claimNextPost(c, key, doc);
  if (n === undefined) return { kind: 'wait', ms: CLAIM_LOST_WAIT_MS };
  logger?.warn({ messageId }, 'in-doubt send: no status within the grace period; sending once more');
  await updateAttempt(c, key, {
    tries: n,
    state: 'in_flight',
    startedAt: now,
    resends: doc.resends + 1,
  });
  return { kind: 'send', resend: true };
}

/**
 * Records a POST's answer. `wamid` when Meta accepted it; `lost: true` when the answer may hide an
 * accepted send (the ledger then keeps it in flight: in doubt); otherwise a definite refusal.
 */
export async function endSend(
  c: Collections,
  messageId: string,
  answer: { wamid: string } | { lost: true } | { refused: true },
  onInDoubt?: OnInDoubt,
  round?: number,
): Promise<void> {
  const key = sendKey(messageId, round);
  if ('lost' in answer) {
    // In doubt from now: shown on GET /v1/messages/:id; a status webhook may still confirm it.
    const now = Date.now();
    await onInDoubt?.(new Date(now).toISOString());
    await Promise.all([
      updateAttempt(c, key, { inDoubtAt: now }),
      markInDoubt(c, messageId, new Date(now).toISOString()),
    ]);
    return;
  }
  if ('wamid' in answer) await updateAttempt(c, key, { state: 'answered', wamid: answer.wamid, confirmedBy: 'answer' });
  else await updateAttempt(c, key, { state: 'answered' });
}

/**
 * Called by the webhook sink with the statuses of a delivery: a `sent`/`delivered`/`read` status
 * tagged with one of our message ids confirms that send (a point read of the ledger by `_id`; an
 * insert into `send_confirmations` only for a message still without a wamid: the ledger keeps one
 * writer). The waiting sender then settles it as sent without POSTing again.
 */
export async function confirmFromStatuses(
  c: Collections,
  statuses: { bizOpaqueCallbackData?: string; wamid: string; status: string }[],
): Promise<void> {
  const confirming = statuses.filter(
    (s) => s.bizOpaqueCallbackData && (s.status === 'sent' || s.status === 'delivered' || s.status === 'read'),
  );
  await Promise.all(
    confirming.map(async (s) => {
      // The send key is the settlement's `_id` too (`sendKey`). A settled send needs no
      // confirmation: read first, it spares the ledger's read for nearly every status (and a
      // direct send's entry, whose answer is its settlement, shows no wamid).
      if (await findSettlement(c, s.bizOpaqueCallbackData!)) return;
      const doc = await readAttempt(c, s.bizOpaqueCallbackData!);
      if (!doc || doc.wamid) return;
      await insertConfirmation(c, { _id: doc._id, wamid: s.wamid, status: s.status, at: new Date().toISOString() });
    }),
  );
}

/** What a ledgered send attempt means: the Cloud API's answer, or the ledger's word without a POST. */
export type LedgeredAttempt =
  | Attempt
  | { kind: 'already_sent'; wamid: string }
  | { kind: 'in_doubt_wait'; ms: number }
  | { kind: 'in_doubt_give_up' }
  /** `depart` said not to send (cancelled): nothing left. */
  | { kind: 'not_sent' }
  /** A free-form message, the customer service window known closed, no fallback template: not POSTed. */
  | { kind: 'window_closed' };

/**
 * One send attempt through the ledger: `beginSend`, the customer service window's decision
 * (src/sending/window.ts: the message, its fallback template, or nothing), the POST (tagged with
 * its send key: the message id, or `<id>#2` for the send after a late failure), then `endSend`
 * with what the answer means. The one path every Cloud API send takes (admit, the drain). A 131047
 * answer teaches the window it is closed; a message with a fallback template then comes back as
 * `retry`, and its next attempt sends the template.
 */
export async function sendWithLedger(
  c: Collections,
  graph: GraphClient,
  input: SendMessageInput & { messageId: string; round?: number; fallbackTemplate?: TemplateBody | undefined },
  opts: {
    policy: InDoubtPolicy;
    logger: Logger;
    /**
     * The wait for the send's start, made after the ledger recorded the POST (so the POST leaves at
     * its slot, not one database write later); false: do not send (the record is withdrawn).
     */
    depart: () => Promise<boolean>;
    /** Forward targets that may want `message.in_doubt`. */
    targets: readonly ForwardTarget[];
    /**
     * The caller writes the message's settlement as soon as this returns `sent` or `failed` (the
     * direct send): that settlement is then the record of the answer, and the ledger leaves the
     * entry in flight instead of recording it too (one write statement less). A crash (or a
     * failed write) before the settlement leaves the send in doubt, as one during the POST does. The
     * drain, which settles in batches, leaves it unset: its ledger records every answer.
     */
    answerSettled?: boolean;
  },
): Promise<LedgeredAttempt> {
  const { policy, logger, depart } = opts;
  const { round, fallbackTemplate, ...send } = input;
  const onInDoubt: OnInDoubt = (at) =>
    emitServiceEvents(c, opts.targets, [
      messageStepEvent('message.in_doubt', input.wabaId, input.messageId, at, round),
    ]);
  const [begin, window] = await Promise.all([
    beginSend(c, input.messageId, policy, logger, onInDoubt, round),
    readWindowState(c, send, send.content),
  ]);
  if (begin.kind === 'sent') return { kind: 'already_sent', wamid: begin.wamid };
  if (begin.kind === 'wait') return { kind: 'in_doubt_wait', ms: begin.ms };
  if (begin.kind === 'give_up') return { kind: 'in_doubt_give_up' };
  const leaves = decideForWindow(send.content, fallbackTemplate, window);
  if (leaves.kind === 'closed' || !(await depart())) {
    await endSend(c, input.messageId, { refused: true }, undefined, round);
    return { kind: leaves.kind === 'closed' ? 'window_closed' : 'not_sent' };
  }
  // A throw leaves the ledger in flight: in doubt.
  const result = await attemptSend(graph, {
    ...send,
    content: leaves.content,
    messageId: sendKey(input.messageId, round),
  });
  // 131047 for the message itself: the window is closed (learnt below); its fallback template goes next.
  const windowShut =
    result.kind === 'failed' && result.error.reason === REASONS.serviceWindowClosed && !leaves.fallback;
  const meaning: LedgeredAttempt =
    result.kind === 'sent' && leaves.fallback
      ? { ...result, sentAs: 'fallback_template' }
      : windowShut && fallbackTemplate
        ? { kind: 'retry', error: result.error }
        : result;
  if (!(opts.answerSettled && (meaning.kind === 'sent' || meaning.kind === 'failed'))) {
    const answer =
      result.kind === 'sent'
        ? { wamid: result.wamid }
        : result.kind === 'retry' && result.error.mayHaveBeenSent
          ? ({ lost: true } as const)
          : ({ refused: true } as const);
    try {
      await endSend(c, input.messageId, answer, onInDoubt, round);
    } catch (err) {
      // The settlement still records a sent message; else the next attempt treats the POST as in doubt.
      logger.warn({ messageId: input.messageId, err: String(err) }, 'recording the send answer failed');
    }
  }
  if (windowShut) await learnWindowClosed(c, send);
  return meaning;
}
