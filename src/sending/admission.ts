import type { Logger } from '../logger';
import type { Collections, MessageDoc } from '../adapters/store/db';
import { insertMessage, markQueued, outcomeOf, readMessage, recordQueueEntry } from './messages.store';
import { createPhoneNumberLookup, type PhoneNumberLookup } from '../lifecycle/phone-numbers.store';
import {
  enqueue,
  findSettlement,
  isQueued,
  outcomeOfSettlement,
  recordSettlements,
  type Settlement,
} from './queue.store';
import { readWabaState } from '../lifecycle/wabas.store';
import { holdCounts, readGateHold } from '../lifecycle/gate-holds.store';
import { recordStray, type OutboxNotifier } from '../lifecycle/outbox.store';
import type { Config } from '../config';
import { tokenPauseFor } from '../lifecycle/credentials';
import type { LaunchDeps } from '../launch-deps';
import { emitServiceEvents, messageEventsOf, messageStepEvent } from '../relay/events';
import type { ForwardTarget } from '../relay/targets';
import {
  REASONS,
  type LifecycleSettings,
  type MessageContent,
  type SendOutcome,
  type SendRequest,
  type WabaState,
} from '../contracts';

/**
 * THE send gate: whether a message may leave now, must wait in its WABA's queue, or is refused.
 * The send API, the send workflow's `admit` activity and the queue's stray check all ask here;
 * nothing else reads a WABA's state to decide about a message.
 */

/**
 * How old the send API's "open" verdict may be for `admit`'s first attempt to act on it instead of
 * reading the gate (and the message the API just recorded) again: 2 s, the hop from the API's
 * read through the run's start to its first activity, with room for a loaded machine (tens of ms
 * idle). Reusing it is safe because a wrong "open" corrects itself: the send fails "account
 * unusable" (or the token's refusal), which queues the message and closes the gate, as a send
 * does when the gate closes while it waits for its slot (up to `ADMIT_MAX_WAIT_MS`, 30 s, after
 * its verdict). A later first attempt (no worker took it in time, a reset of the run) and every
 * retry read everything again. The age is judged on the later of the worker's clock and
 * Temporal's (the attempt's scheduling), both against the API's: a verdict stays in use past the
 * bound only while both of them run behind the API's clock by the difference.
 */
export const GATE_VERDICT_REUSE_MS = 2_000;

/** What the gate says about a message for a WABA in a given state. */
export type GateVerdict =
  | { kind: 'send' }
  /**
   * `held`: closed only by a hold (the workflow has not handled the closing event yet).
   * `tokenPaused`: Meta refuses the WABA's token (src/lifecycle/credentials.ts); the token's
   * credentials workflow asks the WABA to drain once the token works again.
   */
  | { kind: 'queue'; held?: true; tokenPaused?: true }
  /** `reason` is what the message is failed with; `code` and `message` are the API's 409 answer. */
  | { kind: 'refuse'; reason: string; code: string; message: string };

/** Which attempt of `admit` asks, as Temporal says (`Context.current().info`). */
export interface AdmitAttempt {
  /** 1 for the first. */
  attempt: number;
  /** When Temporal scheduled it (epoch ms, the server's clock). */
  scheduledAt: number;
}

/**
 * The refusal policy and the gate, in one table: partner removed → refuse; abandoned with
 * `ON_ABANDON=fail` → refuse; connected (or never seen) → send, unless the WABA's token is paused
 * or a fresh hold says a closure is on its way to the workflow (then queue); anything else → queue.
 */
export function gateVerdict(
  wabaId: string,
  state: WabaState | undefined,
  onAbandon: LifecycleSettings['onAbandon'],
  held = false,
  tokenPaused = false,
): GateVerdict {
  if (state === 'partner_removed') {
    return {
      kind: 'refuse',
      reason: REASONS.partnerRemoved,
      code: 'partner_removed',
      message: `WABA ${wabaId} is no longer shared with us (PARTNER_REMOVED); sends are refused`,
    };
  }
  if (state === 'reconnect_abandoned' && onAbandon === 'fail') {
    return {
      kind: 'refuse',
      reason: REASONS.reconnectTimeout,
      code: 'reconnect_abandoned',
      message: `WABA ${wabaId} did not reconnect and was abandoned; sends are refused until it reconnects`,
    };
  }
  if (tokenPaused) return { kind: 'queue', tokenPaused: true };
  if (state === undefined || state === 'connected') return held ? { kind: 'queue', held: true } : { kind: 'send' };
  return { kind: 'queue' };
}

/** The message part of a send request (text or template). */
export function contentOf(req: {
  type: 'text' | 'template';
  text?: Extract<MessageContent, { type: 'text' }>['text'];
  template?: Extract<MessageContent, { type: 'template' }>['template'];
}): MessageContent {
  if (req.type === 'text' && req.text) return { type: 'text', text: req.text };
  if (req.type === 'template' && req.template) return { type: 'template', template: req.template };
  throw new Error(`a ${req.type} message needs its ${req.type} part`);
}

export interface AdmissionDeps {
  c: Collections;
  launch: LaunchDeps;
  logger: Logger;
  /** This process's outbox relay, told of a stray recorded in the outbox (else a relay's sweep finds it). */
  outbox?: OutboxNotifier;
  /** FORWARD_TARGETS: those asking for service events hear `message.*` (src/relay/events.ts). */
  forwardTargets?: readonly ForwardTarget[];
  /** The Graph tokens by WABA: a WABA whose token Meta refuses waits (src/lifecycle/credentials.ts). */
  graph: Config['graph'];
}

/** What `admitMessage` decided: an outcome already (settled or queued), or "send it now". */
export type Admission =
  { kind: 'done'; outcome: SendOutcome } | { kind: 'send'; wabaId: string; mps: number; doc: MessageDoc };

/** Raised by `admitMessage` for a number that is not registered (a permanent failure). */
export class UnknownPhoneNumberError extends Error {
  override name = 'UnknownPhoneNumberError';
}

/**
 * The admission of messages: the API's acceptance and the send workflow's decision, built once
 * per process over the store and the lifecycle launcher.
 */
export function createAdmission(deps: AdmissionDeps) {
  const { c, launch, logger } = deps;
  const onAbandon = launch.lifecycle.onAbandon;
  const lookup: PhoneNumberLookup = createPhoneNumberLookup(c);

  /**
   * The gate's verdict, read state first: a WABA whose state refuses or queues (anything but
   * connected or never seen) gets that verdict whatever its hold and token pause say (`gateVerdict`
   * looks at those only for a connected WABA; a refusal comes first), so only a connected one has
   * its hold and token pause read too. One read while the gate is closed (where queued sends come
   * from), three in two round trips while it is open. The send API, `admit` and the stray check
   * after queueing all ask here.
   */
  const verdictFor = async (wabaId: string): Promise<GateVerdict> => {
    const waba = await readWabaState(c, wabaId);
    const byState = gateVerdict(wabaId, waba?.state, onAbandon);
    if (byState.kind !== 'send') return byState;
    const [hold, tokenPaused] = await Promise.all([
      readGateHold(c, wabaId),
      tokenPauseFor(c, deps.graph, wabaId, launch.lifecycle.probeIntervalMs),
    ]);
    const held = hold !== null && holdCounts(hold, waba?.closingHandled, Date.now());
    return gateVerdict(wabaId, waba?.state, onAbandon, held, tokenPaused !== null);
  };

  function messageDoc(req: SendRequest, wabaId: string, status: 'accepted' | 'queued'): MessageDoc {
    return {
      _id: req.messageId,
      wabaId,
      phoneNumberId: req.phoneNumberId,
      to: req.to,
      content: contentOf(req),
      ...(req.fallbackTemplate ? { fallbackTemplate: req.fallbackTemplate } : {}),
      status,
      acceptedAt: req.acceptedAt,
      ...(status === 'queued' ? { queuedAt: req.acceptedAt } : {}),
      ...(req.expiresAt ? { expiresAt: req.expiresAt } : {}),
      updatedAt: req.acceptedAt,
      attempts: 0,
    };
  }

  const targets = deps.forwardTargets ?? [];

  /** Records a final outcome; the service event first (idempotent), so a retry never loses it. */
  async function settle(s: Settlement, wabaId: string): Promise<SendOutcome> {
    await emitServiceEvents(c, targets, messageEventsOf(wabaId, [s]));
    await recordSettlements(c, [s]);
    return outcomeOfSettlement(s);
  }

  /**
   * Puts a message at the end of its WABA's durable queue (idempotent per message), then asks the
   * gate once more: if it reopened, or began refusing, between the caller's read and our insert,
   * the lifecycle workflow is told (QUEUE_STRAY) and drains or fails the entry.
   */
  async function queue(
    req: Pick<SendRequest, 'messageId' | 'phoneNumberId' | 'to' | 'expiresAt' | 'fallbackTemplate'>,
    wabaId: string,
    content: MessageContent,
    /** The message document already says `queued`: no update needed. */
    recordedAsQueued: boolean,
    /**
     * Record where the entry sits (`MessageDoc.queueEntryId`), for an admit that finds the message
     * `queued` (`isQueued` by `_id`). The API's acceptance does not: its run reads the outcome and
     * never admits the message; only a replay after the API failed between this and the run's
     * start admits it, and then finds the entry by `messageId` (a scan on FerretDB, once).
     */
    recordEntry = true,
  ): Promise<SendOutcome> {
    const now = new Date().toISOString();
    const { messageId, phoneNumberId, to, expiresAt, fallbackTemplate } = req;
    // Status first, entry second: an admit retry that finds `queued`, no entry and no settlement
    // knows this step was interrupted and queues again.
    if (!recordedAsQueued) await markQueued(c, messageId, now);
    const { id: entryId, seq } = await enqueue(c, {
      wabaId,
      messageId,
      phoneNumberId,
      to,
      content,
      ...(fallbackTemplate ? { fallbackTemplate } : {}),
      ...(expiresAt ? { expiresAt } : {}),
      enqueuedAt: now,
      notify: true,
    });
    if (recordEntry) await recordQueueEntry(c, messageId, entryId);
    await emitServiceEvents(c, targets, [messageStepEvent('message.queued', wabaId, messageId, now)]);
    // The gate may have moved between the caller's read and our insert: reopened (the drain that
    // reopened it may have missed this entry), now refusing (a removal or abandonment that failed
    // the queue before this entry landed), or closed on a hold only (the workflow may still ignore
    // the closing event, a stale one, and stay connected). The lifecycle workflow settles it: the
    // stray goes through the outbox (durable, retried by the relay until the workflow has it, and
    // behind a closure already on its way: per-WABA order), never as a bare signal that one
    // transient Temporal error would lose, leaving the entry queued on an open gate.
    const after = await verdictFor(wabaId);
    if (after.kind === 'send' || after.kind === 'refuse' || after.held) {
      const stray = await recordStray(c, {
        key: `stray:${messageId}`,
        type: 'QUEUE_STRAY',
        wabaId,
        receivedAt: now,
        source: 'send',
        detail:
          after.kind === 'send'
            ? `message ${messageId} queued while the gate reopened`
            : after.kind === 'refuse'
              ? `message ${messageId} queued while sends became refused`
              : `message ${messageId} queued while a closure was on its way to the workflow`,
        entryId: messageId,
        raw: '',
      });
      deps.outbox?.notify(stray);
    }
    logger.debug({ wabaId, messageId, seq }, 'message queued');
    return { messageId, status: 'queued', at: now };
  }

  return {
    lookupNumber: lookup,
    verdictFor,

    /**
     * The API's acceptance of a new message whose gate verdict is not a refusal: records it and,
     * while the gate is closed, queues it right away (so queue order is the order in which the API
     * accepted the messages; the send workflow then only waits for the drain). Idempotent. True
     * when this call recorded the message (another request with the same Idempotency-Key may have).
     */
    async acceptNew(req: SendRequest, wabaId: string, verdict: GateVerdict): Promise<boolean> {
      const closed = verdict.kind !== 'send';
      const inserted = await insertMessage(c, messageDoc(req, wabaId, closed ? 'queued' : 'accepted'));
      if (inserted && closed) await queue(req, wabaId, contentOf(req), true, false);
      return inserted;
    },

    /**
     * The send workflow's decision for one message: records it (idempotent), returns its outcome
     * when it is already settled or queued, expires or refuses it, queues it while the gate is
     * closed, or says "send now". Safe to call again for the same message. `from`: the `admit`
     * attempt asking; the run's first one acts on the API's fresh "open" verdict
     * (`reusesApiVerdict`) instead of reading the gate and the message again.
     */
    async admitMessage(req: SendRequest, from?: AdmitAttempt): Promise<Admission> {
      const now = new Date().toISOString();
      const number = await lookup(req.phoneNumberId);
      if (!number) throw new UnknownPhoneNumberError(`phone number ${req.phoneNumberId} is not registered`);
      const wabaId = number.wabaId;
      const done = (outcome: SendOutcome): Admission => ({ kind: 'done', outcome });
      const expired = (): Promise<SendOutcome> =>
        settle({ messageId: req.messageId, status: 'expired', reason: REASONS.expired, at: now }, wabaId);

      // The first attempt of a run the API started on an open gate a moment ago: the API's verdict
      // stands (see `GATE_VERDICT_REUSE_MS`) and the message is as the API recorded it (nothing
      // else writes a message that is neither queued nor sent yet), so neither is read again.
      if (from && reusesApiVerdict(req, from)) {
        if (req.expiresAt && Date.parse(req.expiresAt) <= Date.now()) return done(await expired());
        return { kind: 'send', wabaId, mps: number.mps, doc: messageDoc(req, wabaId, 'accepted') };
      }

      // A new message (the typed client's first attempt) costs one insert; a known one (the API
      // recorded it, or this is a retry) is read with its settlement. What the API recorded is not
      // inserted again: that insert could only fail.
      let doc = messageDoc(req, wabaId, 'accepted');
      if (req.recorded || !(await insertMessage(c, doc))) {
        const known = await readMessage(c, req.messageId);
        if (known?.settlement) return done(outcomeOf(req.messageId, known));
        if (!known?.doc) throw new Error(`message ${req.messageId} vanished`); // retried by Temporal
        doc = known.doc;
        if (doc.status === 'queued') {
          // Queued (by the API, or an earlier attempt): still waiting, or settled since we looked.
          if (await isQueued(c, req.messageId, doc.queueEntryId)) {
            return done({ messageId: req.messageId, status: 'queued', at: doc.queuedAt ?? now });
          }
          const settlement = await findSettlement(c, req.messageId);
          if (settlement) return done(outcomeOf(req.messageId, { doc, settlement }));
          // Marked queued but never inserted (an interrupted attempt): queue it again below.
        }
      }

      if (req.expiresAt && Date.parse(req.expiresAt) <= Date.now()) return done(await expired());
      const verdict = await verdictFor(wabaId);
      if (verdict.kind === 'refuse') {
        return done(
          await settle({ messageId: req.messageId, status: 'failed', reason: verdict.reason, at: now }, wabaId),
        );
      }
      // Closed gate, or an interrupted attempt that had marked the message queued: queue it.
      if (verdict.kind === 'queue' || doc.status === 'queued') {
        return done(await queue(req, wabaId, doc.content, doc.status === 'queued'));
      }
      return { kind: 'send', wabaId, mps: number.mps, doc };
    },

    /** Queues a message whose send proved the account unusable (the gate is being closed). */
    requeue: (req: SendRequest, wabaId: string, doc: MessageDoc) =>
      queue(req, wabaId, doc.content, doc.status === 'queued'),

    settle,
  };
}

export type AdmissionService = ReturnType<typeof createAdmission>;

/**
 * Whether `admit`'s attempt may act on the send API's "open" verdict: the run's first attempt, for
 * a message the API recorded after reading the gate open at most `GATE_VERDICT_REUSE_MS` ago.
 */
export function reusesApiVerdict(req: SendRequest, from: AdmitAttempt, now = Date.now()): boolean {
  if (from.attempt !== 1 || !req.recorded || req.gateOpenAt === undefined) return false;
  return Math.max(now, from.scheduledAt) - req.gateOpenAt <= GATE_VERDICT_REUSE_MS;
}
