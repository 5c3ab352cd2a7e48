/**
 * The per-WABA lifecycle as a pure state machine: every decision the lifecycle workflow makes,
 * as functions of (state, input, context) that return the next state and the commands to carry
 * out. No Temporal, no I/O, no clock: the workflow shell (./lifecycle.workflow.ts) passes the time in,
 * runs the commands through activities, in order, and feeds back the one thing a step may have
 * to wait for (a drain it asked to stop has stopped). Queue counts stay with the shell: alerts
 * are data rendered with them (`alertContent`), and a stray drain may be conditional on one.
 *
 * Nothing here is mutated: every function returns new objects.
 */
import type {
  AlertInput,
  DrainInput,
  DrainResult,
  EscalationLevel,
  EventLogEntry,
  GateCause,
  GateClosure,
  LateFailureInput,
  LifecycleEvent,
  LifecycleSettings,
  OperatorAction,
  ProbeResult,
  REASONS,
  ReopenCause,
  WabaLifecycleView,
  WabaRecord,
  WabaState,
} from '../contracts';
import { HOLDING_EVENTS } from '../contracts';

/** The machine's state: the WABA document as the workflow carries it (and `persist` writes it). */
export type LifecycleState = WabaRecord;

/** What the shell knows and the machine may not compute: the time, the settings, a running drain. */
export interface StepContext {
  /** Epoch milliseconds (the workflow clock) at which the input is applied. */
  now: number;
  settings: LifecycleSettings;
  /** A drain activity was started and has not been cancelled or reported back yet. */
  drainRunning: boolean;
}

/** What the machine still has to do once a drain it asked to stop has stopped sending. */
export type AfterDrainStopped =
  | {
      action: 'closeGate';
      type: 'ACCOUNT_OFFBOARDED' | 'SEND_ACCOUNT_UNUSABLE';
      detail?: string;
      /** Why, with the evidence. */
      closure: Omit<GateClosure, 'at'>;
    }
  | { action: 'removePartner'; metaTime?: number; detail?: string; closure: Omit<GateClosure, 'at'> };

/** What the machine reacts to. */
export type MachineInput =
  /** A lifecycle event from the inbox (already deduplicated by key). */
  | { kind: 'event'; event: LifecycleEvent }
  /** An operator action the update handler accepted (see `refusal`). */
  | { kind: 'operator'; action: OperatorAction }
  /** The WABA has been offboarded long enough for this escalation level (see `nextWakeUp`). */
  | { kind: 'escalation'; level: number }
  /**
   * The drain activity returned, or ended without the machine asking for it (`interrupted`: it
   * failed or was cancelled from outside; nothing is sending any more).
   */
  | { kind: 'drainEnded'; outcome: DrainResult | 'interrupted' }
  /** A drain stopped by a `cancelDrain` command has stopped sending; `then` says what follows. */
  | { kind: 'drainStopped'; then: AfterDrainStopped }
  /** A `probe` command's answer: what Meta's phone-number nodes say now. */
  | { kind: 'probed'; result: ProbeResult };

/** An alert, as data: `alertContent` renders it once the queue counts it mentions are known. */
export type AlertSpec =
  | { kind: 'accountUnusable'; wabaId: string; detail?: string }
  | { kind: 'partnerRemoved'; wabaId: string; detail?: string }
  | {
      kind: 'escalated';
      wabaId: string;
      level: number;
      severity: EscalationLevel['severity'];
      afterMs: number;
      since: string;
      /** The closure's detail (what closed the gate: Meta's event and reason, the send error). */
      cause?: string;
    }
  | { kind: 'abandoned'; wabaId: string; level: number; reason: string; onAbandon: LifecycleSettings['onAbandon'] }
  | { kind: 'reconnected'; wabaId: string; sent: number; failed: number; expired: number }
  | { kind: 'probeReopened'; wabaId: string; cause: ReopenCause; closedBy?: GateCause; detail: string }
  | { kind: 'partnerBack'; wabaId: string; cause: ReopenCause; detail?: string };

/**
 * What the shell carries out, in order, each one finished before the next starts (except the
 * drain, which runs in the background, and alerts, which are delivered in the background).
 */
export type Command =
  /**
   * Cancel the running drain and wait until it has stopped sending, then feed
   * `{ kind: 'drainStopped', then }` back. Always the last command of its step.
   */
  | { type: 'cancelDrain'; then: AfterDrainStopped }
  /**
   * `saveWaba(waba)`, which also reports the queue after the write (what later `alert`s and
   * `startDrain.onlyIfQueued` see): its length in a step that raises an alert, else only whether
   * anything waits (the shell's choice: queue counts are the shell's).
   */
  | { type: 'persist'; waba: LifecycleState }
  /** `countQueued(wabaId)`; the count is what later `alert`s and `startDrain.onlyIfQueued` see. */
  | { type: 'countQueued' }
  /** Set `WabaState` and `EscalationLevel`. */
  | { type: 'upsertSearchAttributes'; state: WabaState; escalationLevel: number }
  /**
   * Start `drainQueue({ wabaId, mode })` in the background; with `onlyIfQueued`, only when the last
   * count is above 0. A `reconnected` drain skipped that way (the gate's new state was just saved
   * and the queue counted empty) ends at once: the shell feeds back `drainEnded` with nothing sent,
   * without an activity.
   */
  | { type: 'startDrain'; mode: DrainInput['mode']; onlyIfQueued: boolean }
  /** `failQueue({ wabaId, reason })`; its result is the `failed` alerts see. With `queueEmptied`, the count becomes 0. */
  | { type: 'failQueue'; reason: string; queueEmptied: boolean }
  /** `deliverAlert` to every sink, in the background. */
  | { type: 'alert'; alert: AlertSpec }
  /** `requeueLateFailure(failure)`: queue a message Meta failed after accepting it again, once. */
  | { type: 'requeueLate'; failure: LateFailureInput };

/** A step of the machine: the state to carry on with and the commands to carry out. */
export interface Step {
  state: LifecycleState;
  commands: Command[];
}

/** Queue counts reported by the commands run so far; they fill in alert texts. */
export interface QueueCounts {
  /** Entries queued, as last counted (0 after a `failQueue` with `queueEmptied`). */
  queued: number;
  /** Entries failed by the last `failQueue`. */
  failed: number;
}

/** When the shell should wake up next if nothing arrives. */
export type WakeUp =
  /**
   * Wait for an event, an operator action, a drain outcome or a probe the sweep reports, however
   * long it takes (`sweptProbeAt`: when the sweep probes this WABA next, for operators).
   */
  | { kind: 'input'; sweptProbeAt?: number }
  /**
   * Wait for input, but no later than `at` (epoch ms): then apply escalation `level` (with
   * `probeFirst`, probe Meta first and apply the level only if the gate is still closed).
   */
  | { kind: 'escalation'; level: number; at: number; probeFirst?: boolean; sweptProbeAt?: number }
  /** Nothing to wait for: the run may end once its handlers have finished. */
  | { kind: 'done' };

/** How many recent events the WABA keeps (as the store does). */
const EVENT_LOG_LENGTH = 20;

// Reason codes, checked against the contracts module without importing it at run time.
const PARTNER_REMOVED: (typeof REASONS)['partnerRemoved'] = 'partner_removed';
const RECONNECT_TIMEOUT: (typeof REASONS)['reconnectTimeout'] = 'reconnect_timeout';

const iso = (now: number): string => new Date(now).toISOString();

/**
 * Applies one input. Each input is applied as it comes, whatever the state (an operator action
 * is checked against `refusal` when the update is accepted, not again here).
 */
export function transition(state: LifecycleState, input: MachineInput, ctx: StepContext): Step {
  switch (input.kind) {
    case 'event':
      return applyEvent(state, input.event, ctx);
    case 'operator':
      return applyOperator(state, input.action, ctx);
    case 'escalation':
      return escalate(state, input.level, ctx);
    case 'drainEnded':
      return input.outcome === 'interrupted' ? drainInterrupted(state) : finishDrain(state, input.outcome, ctx);
    case 'drainStopped':
      return afterDrainStopped(state, input.then, ctx);
    case 'probed':
      return afterProbe(state, input.result, ctx);
  }
}

/** What a freshly started run does with the WABA it loaded: resume a drain a previous run left open. */
export function onLoad(state: LifecycleState): Command[] {
  return state.state === 'draining' ? [{ type: 'startDrain', mode: 'reconnected', onlyIfQueued: true }] : [];
}

/**
 * A drain that ended without the machine asking (its activity failed, or it was cancelled from
 * outside): nothing is sending any more. A WABA still draining drains again (the queue is durable
 * and the attempt ledger sends each message once; an empty queue opens the gate at once); a
 * connected one drains the entries queued meanwhile, if any. Never `draining` with nothing running.
 */
function drainInterrupted(state: LifecycleState): Step {
  if (state.state !== 'draining' && state.state !== 'connected') return { state, commands: [] };
  const mode: DrainInput['mode'] = state.state === 'draining' ? 'reconnected' : 'stray';
  return { state, commands: [{ type: 'countQueued' }, { type: 'startDrain', mode, onlyIfQueued: true }] };
}

/** Why an operator action does not apply to the WABA as it is now; undefined when it does. */
export function refusal(state: LifecycleState, action: OperatorAction): string | undefined {
  if (action.action === 'force_resume' && state.state !== 'offboarded' && state.state !== 'reconnect_abandoned') {
    return `force_resume applies to an offboarded or abandoned WABA, not to one that is ${state.state}${state.state === 'partner_removed' ? ' (use reinstate once the WABA is shared with us again)' : ''}`;
  }
  if (action.action === 'reinstate' && state.state !== 'partner_removed') {
    return `reinstate applies to a partner-removed WABA, not to one that is ${state.state}`;
  }
  if (action.action === 'force_abandon' && state.state !== 'offboarded') {
    return `force_abandon applies to an offboarded WABA, not to one that is ${state.state}`;
  }
  return undefined;
}

/**
 * The gap from probe point `p` to the next one, for a gate closed since `sinceMs`: `probeIntervalMs`
 * without a back-off; with one (`probeMaxIntervalMs`) as long as the gate has been closed at `p`,
 * between the interval and the cap. So the points fall 1, 2, 4, 8 … minutes after the closure,
 * then every `probeMaxIntervalMs`. Reconnections come within minutes, so early probes matter
 * most; later ones keep a lost webhook from closing a gate for good at a cost that stays small
 * however many WABAs wait (10,000 at a 1 h cap: under 3 probes a second).
 */
function probeGap(sinceMs: number, interval: number, max: number | undefined, p: number): number {
  if (max === undefined) return interval;
  return Math.min(Math.max(max, interval), Math.max(interval, p - sinceMs));
}

/**
 * The first probe point strictly after `t` on the fixed schedule of a gate closed since `sinceMs`
 * (points `probeGap` apart from `sinceMs + probeIntervalMs`), undefined when probing is off. The
 * gate probe sweep (src/lifecycle/gate-probes.workflow.ts) probes a WABA when a point falls in its window, so
 * it needs no memory of earlier probes; a late sweep probes once for all the points it missed.
 * Constant work per WABA however long it has been closed (the steady part is arithmetic).
 */
export function probePointAfter(sinceMs: number, settings: LifecycleSettings, t: number): number | undefined {
  const interval = settings.probeIntervalMs;
  if (!interval || interval <= 0) return undefined;
  const max = settings.probeMaxIntervalMs;
  const cap = max === undefined ? interval : Math.max(max, interval);
  let p = sinceMs + interval;
  while (p <= t) {
    const gap = probeGap(sinceMs, interval, max, p);
    if (gap === cap) return p + (Math.floor((t - p) / cap) + 1) * cap; // evenly spaced from here
    p += gap;
  }
  return p;
}

/** True when a probe point of a gate closed since `sinceMs` falls in the window (`fromMs`, `toMs`]. */
export function probeDue(sinceMs: number, settings: LifecycleSettings, fromMs: number, toMs: number): boolean {
  const p = probePointAfter(sinceMs, settings, fromMs);
  return p !== undefined && p <= toMs;
}

/** How often the gate probe sweep looks again while probing is off (a deployment may turn it on). */
export const PROBE_SWEEP_IDLE_MS = 60_000;

/**
 * How often the gate probe sweep looks for due probes: half the probe interval, between 1 s and
 * 30 s (a probe then comes at most that long after its point). Undefined when probing is off
 * (the sweep then looks again every `PROBE_SWEEP_IDLE_MS`).
 */
export function probeSweepPeriodMs(settings: LifecycleSettings): number | undefined {
  const interval = settings.probeIntervalMs;
  if (!interval || interval <= 0) return undefined;
  return Math.min(30_000, Math.max(1_000, Math.floor(interval / 2)));
}

/**
 * The share of its time the gate probe sweep may spend reading the offboarded WABAs: FerretDB
 * answers that read (`wabas` by state) by decoding every WABA document, about 3.8 s of its CPU at
 * 10,000 (measured), so at a 30 s period the read alone would hold ~13% of a core. 1/80 keeps it
 * near 1%.
 */
export const SWEEP_READ_SHARE = 1 / 80;

/** The longest the sweep waits between passes, however slow its read (probes come at most this late). */
export const SWEEP_MAX_PERIOD_MS = 10 * 60_000;

/**
 * The wait before the next sweep pass, given the last pass's read of the offboarded WABAs: the
 * configured period (`probeSweepPeriodMs`), stretched so that the read takes at most
 * `SWEEP_READ_SHARE` of the time (a few hundred offboarded WABAs: the period itself; 10,000 on
 * FerretDB: about 6 minutes), never longer than `SWEEP_MAX_PERIOD_MS`. A longer period makes a
 * probe later, never skipped: a pass probes once for every point since the last.
 */
export function sweepPeriodAfterRead(periodMs: number, readMs: number): number {
  return stretchedPeriod(periodMs, readMs, SWEEP_READ_SHARE, SWEEP_MAX_PERIOD_MS);
}

/**
 * The one rule for a loop whose pass scans the store (on FerretDB a scan reads every document,
 * whatever its filter): wait `periodMs` between passes, but long enough that the last pass's
 * `tookMs` is at most `share` of the time, and never more than `maxMs`. The gate probe sweep
 * (`sweepPeriodAfterRead`) and the outbox relay's sweep (src/lifecycle/outbox-relay.ts) use it.
 */
export function stretchedPeriod(periodMs: number, tookMs: number, share: number, maxMs: number): number {
  return Math.max(periodMs, Math.min(maxMs, Math.ceil(tookMs / share)));
}

/**
 * What to wait for when the inbox, the operator request and the drain outcome are all empty, at
 * `now`. Probes between levels are the gate probe sweep's (src/lifecycle/gate-probes.workflow.ts), which signals
 * a usable result: the run only waits for input or the next escalation level (probed first when
 * probing is on); `sweptProbeAt` only tells operators when the sweep looks next.
 *
 * Always computable whatever the settings: when a deployment shortened `ESCALATION_LEVELS` below
 * the level a WABA already reached, its last level (abandonment) is due now.
 */
export function nextWakeUp(
  state: LifecycleState,
  settings: LifecycleSettings,
  drainRunning: boolean,
  now: number,
): WakeUp {
  if (drainRunning) return { kind: 'input' };
  if (state.state !== 'offboarded') return { kind: 'done' };
  const sinceMs = Date.parse(state.since);
  const probeAt = probePointAfter(sinceMs, settings, now);
  const swept = probeAt !== undefined ? { sweptProbeAt: probeAt } : {};
  const probeFirst = probeAt !== undefined ? { probeFirst: true } : {};
  const levels = settings.escalation;
  const next = levels[state.escalationLevel];
  if (!next) {
    // At or past the last level of these settings and not abandoned (they were shortened under the
    // run; a credentials closure is never abandoned: it waits for the probe): the last level applies now.
    const overrun =
      levels.length > 0 && state.escalationLevel >= levels.length && state.closure?.cause !== 'credentials';
    if (overrun) return { kind: 'escalation', level: levels.length, at: now, ...probeFirst, ...swept };
    return { kind: 'input', ...swept };
  }
  return { kind: 'escalation', level: next.level, at: sinceMs + next.afterMs, ...probeFirst, ...swept };
}

/** `nextWakeUp` in plain words, for operators. */
export function describeWakeUp(wake: WakeUp): string {
  const swept =
    'sweptProbeAt' in wake && wake.sweptProbeAt !== undefined
      ? `; next probe of Meta at ${iso(wake.sweptProbeAt)} (by the gate probe sweep)`
      : '';
  switch (wake.kind) {
    case 'input':
      return `waiting for a webhook, an operator action or the drain${swept}`;
    case 'done':
      return 'nothing to wait for: the run ends';
    case 'escalation':
      return `escalation level ${wake.level} at ${iso(wake.at)}${wake.probeFirst ? ' (after a probe of Meta)' : ''}${swept}`;
  }
}

/** The workflow's current details (`setCurrentDetails`): what an operator reads on its page in Temporal UI. */
export function currentDetails(
  state: LifecycleState | undefined,
  queued: number,
  next: string,
  lastProbe?: ProbeResult & { at: string },
  /** `queued` only says whether anything waits (the last save did not count the queue). */
  queuedAtLeast = false,
): string {
  if (!state) return 'Loading the WABA document.';
  const lines = [`State: ${state.state} since ${state.since}.`];
  const c = state.closure;
  if (c) {
    const code = c.code !== undefined ? `, Meta code ${c.code}` : '';
    lines.push(`Gate closed. Cause: ${c.cause}${code} at ${c.at}${c.detail ? ` (${c.detail})` : ''}.`);
  } else if (state.state === 'connected') {
    lines.push('Gate open.');
  } else {
    lines.push(`Gate closed${state.reason ? `: ${state.reason}` : ''}.`);
  }
  if (state.lastReopen) lines.push(`Last reopened at ${state.lastReopen.at} (${state.lastReopen.cause}).`);
  lines.push(queuedAtLeast && queued > 0 ? 'Queued: one or more message(s).' : `Queued: ${queued} message(s).`);
  if (lastProbe) lines.push(`Last probe at ${lastProbe.at}: ${lastProbe.verdict} (${lastProbe.detail}).`);
  lines.push(`Next: ${next}.`);
  return lines.join('\n');
}

/** The answer of the `state` query; before the WABA is loaded, a connected WABA with no history. */
export function view(
  wabaId: string,
  state: LifecycleState | undefined,
  queued: number,
  extra: { next?: string; lastProbe?: ProbeResult & { at: string } } = {},
): WabaLifecycleView {
  return {
    wabaId,
    state: state?.state ?? 'connected',
    since: state?.since ?? '',
    escalationLevel: state?.escalationLevel ?? 0,
    queued,
    lastEvent: state?.events[state.events.length - 1],
    events: state?.events ?? [],
    ...(state?.closure ? { closure: state.closure } : {}),
    ...(state?.lastReopen ? { lastReopen: state.lastReopen } : {}),
    ...(state?.disconnectionInfo ? { disconnectionInfo: state.disconnectionInfo } : {}),
    ...(extra.lastProbe ? { lastProbe: extra.lastProbe } : {}),
    next: extra.next ?? '',
  };
}

/**
 * The alert as sinks receive it: its content (`alertContent`) with the queue counts at the time it
 * is raised, the WABA's state after the step that raised it, and when.
 */
export function composeAlert(
  spec: AlertSpec,
  counts: QueueCounts,
  raised: { wabaId: string; state: WabaState; at: string; runSinks?: AlertInput['runSinks'] },
): AlertInput {
  return {
    ...alertContent(spec, counts),
    kind: spec.kind,
    wabaId: raised.wabaId,
    at: raised.at,
    state: raised.state,
    queued: counts.queued,
    ...(raised.runSinks ? { runSinks: raised.runSinks } : {}),
  };
}

/** The alert's level, severity, title and text, given the queue counts at the time it is raised. */
export function alertContent(
  spec: AlertSpec,
  counts: QueueCounts,
): Pick<AlertInput, 'level' | 'severity' | 'title' | 'text'> {
  switch (spec.kind) {
    case 'accountUnusable':
      return {
        level: 0,
        severity: 'warning',
        title: 'Send gate closed: Meta says the account cannot send',
        text: `A send for WABA ${spec.wabaId} failed with an "account unusable" error (${spec.detail ?? 'no detail'}). Sends are queued until ACCOUNT_RECONNECTED or an operator force-resumes.`,
      };
    case 'partnerRemoved':
      return {
        level: 0,
        severity: 'critical',
        title: 'Partner removed: access to the WABA is gone',
        text: `WABA ${spec.wabaId} is no longer shared with us (${spec.detail ?? 'no reason given'}). ${counts.failed} queued message(s) failed with reason partner_removed; new sends are refused.`,
      };
    case 'escalated':
      return {
        level: spec.level,
        severity: spec.severity,
        title: `WABA offboarded for ${minutes(spec.afterMs)} min (level ${spec.level})`,
        text: `WABA ${spec.wabaId} has been offboarded since ${spec.since}${spec.cause ? ` (${spec.cause})` : ''}; ${counts.queued} message(s) are queued. Waiting for ACCOUNT_RECONNECTED. If another partner onboarded the WABA, reconnection will never come.`,
      };
    case 'abandoned':
      return {
        level: spec.level,
        severity: 'critical',
        title: 'Reconnection abandoned',
        text:
          `WABA ${spec.wabaId} did not reconnect (${spec.reason}). ` +
          (spec.onAbandon === 'fail'
            ? `${counts.failed} queued message(s) failed with reason reconnect_timeout.`
            : `${counts.queued} message(s) stay queued.`) +
          ' A later ACCOUNT_RECONNECTED still drains and reopens the gate.',
      };
    case 'reconnected':
      return {
        level: 0,
        severity: 'warning',
        title: 'WABA reconnected: queued messages sent',
        text: `WABA ${spec.wabaId} is back on the Cloud API; ${spec.sent} queued message(s) sent, ${spec.failed} failed, ${spec.expired} expired. Only the Cloud API companion is restored: the client must re-link WhatsApp Web and other companion devices by hand.`,
      };
    case 'probeReopened':
      if (spec.cause === 'credentials_restored') {
        return {
          level: 0,
          severity: 'warning',
          title: 'Gate reopened: the token works again',
          text: `WABA ${spec.wabaId}'s gate was closed by an authentication error (token invalid or expired); a probe with the token now succeeds (${spec.detail}). The gate reopened; ${counts.queued} queued message(s) are draining.`,
        };
      }
      return spec.cause === 'reconnected_by_probe'
        ? {
            level: 0,
            severity: 'warning',
            title: "Gate reopened by a probe: Meta's webhook never arrived",
            text: `WABA ${spec.wabaId} was offboarded, and Meta's phone-number node now says it can send (${spec.detail}), but no ACCOUNT_RECONNECTED webhook arrived. The gate reopened and ${counts.queued} queued message(s) are draining. Check the webhook subscription and delivery.`,
          }
        : {
            level: 0,
            severity: 'warning',
            title: 'Gate reopened: the probe says the number can send',
            text: `WABA ${spec.wabaId}'s gate was closed by a ${spec.closedBy ?? 'send'} error, and Meta's phone-number node still says it can send after the grace period (${spec.detail}). The gate reopened; ${counts.queued} queued message(s) are draining. A new failure closes it again.`,
          };
    case 'partnerBack':
      return {
        level: 0,
        severity: 'warning',
        title: spec.cause === 'partner_added' ? 'Partner added: the WABA is shared with us again' : 'WABA reinstated',
        text: `WABA ${spec.wabaId} is connected again (${spec.cause}${spec.detail ? `: ${spec.detail}` : ''}); sends are accepted. Messages failed at the removal stay failed.`,
      };
  }
}

// ---- transitions -----------------------------------------------------------------------------

const minutes = (ms: number): number => Math.round(ms / 60_000);

/** Appends to the recent-event log, dropping the oldest entry beyond its length. */
function note(state: LifecycleState, entry: Omit<EventLogEntry, 'at'>, now: number): LifecycleState {
  const events = [...state.events, { ...entry, at: iso(now) }];
  if (events.length > EVENT_LOG_LENGTH) events.shift();
  return { ...state, events };
}

/** Writes the state as it is (the write counts the queue again), as the document's next revision. */
function save(state: LifecycleState, now: number): Step {
  const next = { ...state, updatedAt: iso(now), rev: (state.rev ?? 0) + 1 };
  return { state: next, commands: [{ type: 'persist', waba: next }] };
}

/**
 * Moves to `target` (a new `since`, and escalation back to 0 when offboarded or connected anew),
 * records the reason, writes, counts and updates the search attributes; also when the state
 * does not change.
 */
function moveTo(state: LifecycleState, target: WabaState, reason: string | undefined, now: number): Step {
  let next = state;
  if (state.state !== target) {
    next = { ...next, state: target, since: iso(now) };
    if (target === 'offboarded' || target === 'connected') next.escalationLevel = 0;
  }
  const saved = save({ ...next, reason }, now);
  return {
    state: saved.state,
    commands: [
      ...saved.commands,
      { type: 'upsertSearchAttributes', state: saved.state.state, escalationLevel: saved.state.escalationLevel },
    ],
  };
}

/** Reopens the gate: the closure becomes `lastReopen`, and internal events older than now become stale. */
function reopened(state: LifecycleState, cause: ReopenCause, now: number, detail?: string): LifecycleState {
  const { closure, ...rest } = state;
  return {
    ...rest,
    lastReopen: { cause, at: iso(now), ...(closure ? { closedBy: closure.cause } : {}), ...(detail ? { detail } : {}) },
    lastReconnectedAt: now,
  };
}

/** Records why the gate is closed (a new closure replaces the old one). */
function closed(state: LifecycleState, closure: Omit<GateClosure, 'at'>, now: number): LifecycleState {
  return { ...state, closure: { ...closure, at: iso(now) } };
}

/** The closure a closing event stands for, with its evidence. */
function closureOf(e: LifecycleEvent): Omit<GateClosure, 'at'> {
  const cause: GateCause =
    e.type === 'ACCOUNT_OFFBOARDED'
      ? 'offboarded'
      : e.errorReason === 'auth_failed'
        ? 'credentials'
        : e.source === 'status'
          ? 'failed_status'
          : 'send_error';
  return {
    cause,
    ...(e.metaTime !== undefined ? { metaTime: e.metaTime } : {}),
    ...(e.causeTime !== undefined ? { causeTime: e.causeTime } : {}),
    ...(e.code !== undefined ? { code: e.code } : {}),
    ...(e.messageId ? { messageId: e.messageId } : {}),
    ...(e.wamid ? { wamid: e.wamid } : {}),
    ...(e.detail ? { detail: e.detail } : {}),
    ...(e.disconnectionInfo ? { disconnectionInfo: e.disconnectionInfo } : {}),
  };
}

function then(step: Step, ...commands: Command[]): Step {
  return { state: step.state, commands: [...step.commands, ...commands] };
}

/**
 * An event's step: what it does to the gate (`gateStep`), and for a failed status naming our send
 * (a message Meta accepted, then failed because the account cannot send), that message queued
 * again, once, whether or not the status closes the gate (a stale one does not, but the message
 * still failed). Not for a removed WABA: its queue would only be failed. When the gate stays open
 * and nothing drains, a stray drain sends it.
 */
function applyEvent(state: LifecycleState, e: LifecycleEvent, ctx: StepContext): Step {
  // A closing webhook event is handled whatever its outcome: the step's save releases its gate hold.
  const handled = HOLDING_EVENTS.has(e.type)
    ? { ...state, closingHandled: { key: e.key, receivedAt: e.receivedAt } }
    : state;
  const step = gateStep(handled, e, ctx);
  if (e.type !== 'SEND_ACCOUNT_UNUSABLE' || e.source !== 'status' || !e.sendKey || !e.wamid) return step;
  if (step.state.state === 'partner_removed') return step;
  const requeue: Command = {
    type: 'requeueLate',
    failure: {
      wabaId: state.wabaId,
      sendKey: e.sendKey,
      wamid: e.wamid,
      code: e.code ?? 0,
      failedAt: e.causeTime ?? ctx.now,
    },
  };
  const last = step.commands[step.commands.length - 1];
  // `cancelDrain` stays last: the message is queued before the drain is stopped.
  if (last && last.type === 'cancelDrain') {
    return { state: step.state, commands: [...step.commands.slice(0, -1), requeue, last] };
  }
  const drains = step.commands.some((c) => c.type === 'startDrain') || ctx.drainRunning;
  if (step.state.state !== 'connected' || drains) return then(step, requeue);
  return then(step, requeue, { type: 'countQueued' }, { type: 'startDrain', mode: 'stray', onlyIfQueued: true });
}

/**
 * Whether Meta's `PARTNER_REMOVED` is a pause (the gate closes, sends queue, `ACCOUNT_RECONNECTED`
 * drains) rather than the end of our access. `USER_RE_REGISTERED` is the coexistence re-registration
 * (new phone, reinstall) that Meta reconnects within minutes. A removal without a reason (Meta's
 * `disconnection_info` is rolled out gradually) is a pause too: taking a re-registration for a
 * final removal fails every queued message and refuses sends after Meta has reconnected it (the
 * costly, silent mistake), while taking a final removal for a pause only keeps messages queued
 * until the last escalation level abandons them, alerting at every level. Every other reason
 * (`ACCOUNT_DISCONNECTED`, `BUSINESS_DOWNGRADE`, `CHANGE_NUMBER`, `COMPANION_INACTIVITY`,
 * `PRIMARY_INACTIVITY`, …) is final.
 */
export function removalIsPause(info: LifecycleEvent['disconnectionInfo']): boolean {
  return !info?.reason || info.reason === 'USER_RE_REGISTERED';
}

/** The closure detail of a removal taken as a pause. */
function pauseDetail(e: LifecycleEvent): string {
  const reason = e.disconnectionInfo?.reason;
  const why = reason ? `${reason}: a re-registration` : 'no disconnection_info: taken as a re-registration';
  return `PARTNER_REMOVED (${why}); paused until ACCOUNT_RECONNECTED${e.detail ? `; ${e.detail}` : ''}`;
}

function gateStep(
  state: LifecycleState,
  e: LifecycleEvent,
  ctx: StepContext,
  /** The event's type in the WABA's log (a removal taken as a pause is applied as an offboarding). */
  logAs: LifecycleEvent['type'] = e.type,
): Step {
  const { now } = ctx;
  const entry = (outcome: string): Omit<EventLogEntry, 'at'> => ({
    type: logAs,
    metaTime: e.metaTime,
    outcome,
    detail: e.detail,
  });
  const recorded = (w: LifecycleState, outcome: string): Step => save(note(w, entry(outcome), now), now);
  switch (e.type) {
    case 'ACCOUNT_OFFBOARDED':
    case 'SEND_ACCOUNT_UNUSABLE': {
      // The newest offboarding time is remembered even when this one is not applied.
      const w =
        e.metaTime === undefined
          ? state
          : { ...state, lastOffboardedMetaTime: Math.max(state.lastOffboardedMetaTime ?? 0, e.metaTime) };
      if (w.state === 'partner_removed') return recorded(w, 'ignored: partner removed');
      if (
        e.metaTime !== undefined &&
        w.lastReconnectedMetaTime !== undefined &&
        e.metaTime <= w.lastReconnectedMetaTime
      ) {
        return recorded(w, 'stale: a later reconnection was already seen');
      }
      if (
        e.type === 'SEND_ACCOUNT_UNUSABLE' &&
        e.causeTime !== undefined &&
        w.lastReconnectedAt !== undefined &&
        e.causeTime < w.lastReconnectedAt
      ) {
        return recorded(w, 'stale: caused before the last reconnection');
      }
      if (w.state === 'offboarded' || w.state === 'reconnect_abandoned') {
        // Meta's webhook is stronger evidence than a send error: it takes over the closure.
        const upgraded =
          e.type === 'ACCOUNT_OFFBOARDED' &&
          w.closure &&
          w.closure.cause !== 'offboarded' &&
          w.closure.cause !== 'operator'
            ? closed(w, closureOf(e), now)
            : w;
        return recorded(upgraded, 'joined the open offboarding');
      }
      // Connected or draining: close the gate, once any drain has stopped sending.
      const noted = note(w, entry('applied'), now);
      const close: AfterDrainStopped = { action: 'closeGate', type: e.type, detail: e.detail, closure: closureOf(e) };
      if (ctx.drainRunning) return { state: noted, commands: [{ type: 'cancelDrain', then: close }] };
      return afterDrainStopped(noted, close, ctx);
    }
    case 'ACCOUNT_RECONNECTED': {
      const w =
        e.metaTime === undefined
          ? state
          : { ...state, lastReconnectedMetaTime: Math.max(state.lastReconnectedMetaTime ?? 0, e.metaTime) };
      if (w.state === 'partner_removed') return recorded(w, 'ignored: partner removed');
      const open = w.state === 'offboarded' || w.state === 'reconnect_abandoned';
      const older =
        e.metaTime !== undefined && w.lastOffboardedMetaTime !== undefined && e.metaTime < w.lastOffboardedMetaTime;
      // Never drop a reconnection of an open offboarding: Meta's time is when the webhook was sent, and
      // Meta's own example pair has the reconnection earlier. Opening too early costs one failed send.
      if (older && !open) {
        return recorded(w, 'stale: older than the current offboarding');
      }
      if (open) {
        const outcome = older ? "draining (its time is older than the offboarding's: accepted)" : 'draining';
        const moved = moveTo(reopened(note(w, entry(outcome), now), 'reconnected', now), 'draining', undefined, now);
        return then(moved, { type: 'startDrain', mode: 'reconnected', onlyIfQueued: true });
      }
      return recorded(w, w.state === 'draining' ? 'duplicate: already draining' : 'no offboarding open; remembered');
    }
    case 'PARTNER_REMOVED': {
      if (removalIsPause(e.disconnectionInfo)) {
        const recordedInfo = e.disconnectionInfo ? { ...state, disconnectionInfo: e.disconnectionInfo } : state;
        const asOffboarding: LifecycleEvent = { ...e, type: 'ACCOUNT_OFFBOARDED', detail: pauseDetail(e) };
        return gateStep(recordedInfo, asOffboarding, ctx, 'PARTNER_REMOVED');
      }
      const w =
        e.metaTime === undefined
          ? state
          : { ...state, lastPartnerRemovedMetaTime: Math.max(state.lastPartnerRemovedMetaTime ?? 0, e.metaTime) };
      if (state.state === 'partner_removed') return recorded(state, 'duplicate');
      if (
        e.metaTime !== undefined &&
        state.lastPartnerAddedMetaTime !== undefined &&
        e.metaTime < state.lastPartnerAddedMetaTime
      ) {
        return recorded(w, 'stale: older than the last PARTNER_ADDED');
      }
      const remove: AfterDrainStopped = {
        action: 'removePartner',
        metaTime: e.metaTime,
        detail: e.detail,
        closure: {
          cause: 'partner_removed',
          ...(e.metaTime !== undefined ? { metaTime: e.metaTime } : {}),
          ...(e.detail ? { detail: e.detail } : {}),
          ...(e.disconnectionInfo ? { disconnectionInfo: e.disconnectionInfo } : {}),
        },
      };
      const removing = e.disconnectionInfo ? { ...w, disconnectionInfo: e.disconnectionInfo } : w;
      if (ctx.drainRunning) return { state: removing, commands: [{ type: 'cancelDrain', then: remove }] };
      return afterDrainStopped(removing, remove, ctx);
    }
    case 'PARTNER_ADDED': {
      const w =
        e.metaTime === undefined
          ? state
          : { ...state, lastPartnerAddedMetaTime: Math.max(state.lastPartnerAddedMetaTime ?? 0, e.metaTime) };
      if (state.state !== 'partner_removed') return recorded(w, 'no removal open; remembered');
      if (
        e.metaTime !== undefined &&
        state.lastPartnerRemovedMetaTime !== undefined &&
        e.metaTime < state.lastPartnerRemovedMetaTime
      ) {
        return recorded(w, 'stale: older than the removal');
      }
      return backFromRemoval(note(w, entry('connected'), now), 'partner_added', e.detail, ctx);
    }
    case 'QUEUE_STRAY': {
      // Entries queued by a sender that raced the removal (or an abandonment that fails the queue):
      // settled failed now, so nothing stays queued for a WABA whose access is gone.
      const refusing =
        state.state === 'partner_removed' ||
        (state.state === 'reconnect_abandoned' && ctx.settings.onAbandon === 'fail');
      if (refusing) {
        const reason = state.state === 'partner_removed' ? PARTNER_REMOVED : RECONNECT_TIMEOUT;
        return then(recorded(state, `stray entries failed (${reason})`), {
          type: 'failQueue',
          reason,
          queueEmptied: false,
        });
      }
      if (state.state === 'connected' && !ctx.drainRunning) {
        const saved = recorded(state, 'draining stray entries');
        // The drain is started before the write, as it always was (command order is history).
        return {
          state: saved.state,
          commands: [{ type: 'startDrain', mode: 'stray', onlyIfQueued: false }, ...saved.commands],
        };
      }
      return recorded(state, 'queue will be drained by the open cycle');
    }
  }
}

function afterDrainStopped(state: LifecycleState, next: AfterDrainStopped, ctx: StepContext): Step {
  const { now } = ctx;
  if (next.action === 'closeGate') {
    const moved = moveTo(closed(state, next.closure, now), 'offboarded', next.detail ?? next.type, now);
    if (next.type !== 'SEND_ACCOUNT_UNUSABLE') return moved;
    return then(moved, {
      type: 'alert',
      alert: { kind: 'accountUnusable', wabaId: state.wabaId, detail: next.detail },
    });
  }
  const noted = note(
    state,
    { type: 'PARTNER_REMOVED', metaTime: next.metaTime, outcome: 'applied', detail: next.detail },
    now,
  );
  return then(
    moveTo(closed(noted, next.closure, now), 'partner_removed', next.detail ?? 'PARTNER_REMOVED', now),
    { type: 'failQueue', reason: PARTNER_REMOVED, queueEmptied: true },
    { type: 'alert', alert: { kind: 'partnerRemoved', wabaId: state.wabaId, detail: next.detail } },
  );
}

function applyOperator(state: LifecycleState, a: OperatorAction, ctx: StepContext): Step {
  const { now } = ctx;
  const detail = `${a.reason}${a.operator ? ` (by ${a.operator})` : ''}`;
  if (a.action === 'reinstate') {
    const noted = note(state, { type: 'OPERATOR_REINSTATE', outcome: 'connected', detail }, now);
    return backFromRemoval(noted, 'reinstated', detail, ctx);
  }
  if (a.action === 'force_resume') {
    const noted = note(state, { type: 'OPERATOR_FORCE_RESUME', outcome: 'draining', detail }, now);
    return then(moveTo(reopened(noted, 'operator', now, detail), 'draining', `force_resume: ${a.reason}`, now), {
      type: 'startDrain',
      mode: 'reconnected',
      onlyIfQueued: true,
    });
  }
  const noted = note(state, { type: 'OPERATOR_FORCE_ABANDON', outcome: 'abandoned', detail }, now);
  const was = state.closure?.cause;
  const byOperator = closed(
    noted,
    { cause: 'operator', detail: `force_abandon: ${detail}${was ? `; was ${was}` : ''}` },
    now,
  );
  return abandon(byOperator, `force_abandon: ${a.reason}`, ctx);
}

/** A partner-removed WABA shared with us again (PARTNER_ADDED or `reinstate`): connected, gate open. */
function backFromRemoval(
  state: LifecycleState,
  cause: ReopenCause,
  detail: string | undefined,
  ctx: StepContext,
): Step {
  const { now } = ctx;
  const moved = moveTo(reopened(state, cause, now, detail), 'connected', undefined, now);
  return then(
    moved,
    { type: 'alert', alert: { kind: 'partnerBack', wabaId: state.wabaId, cause, ...(detail ? { detail } : {}) } },
    { type: 'startDrain', mode: 'stray', onlyIfQueued: true },
  );
}

/**
 * What a probe of Meta means for a closed gate. Offboarded by Meta (or for an unknown cause) and
 * usable: Meta's ACCOUNT_RECONNECTED was lost, reopen now. Closed by a send error or a failed
 * status and usable: reopen once the closure is `probeGraceMs` old (Meta's node may lag its
 * errors). Unusable or unknown: nothing changes (the probe is not written down).
 */
function afterProbe(state: LifecycleState, result: ProbeResult, ctx: StepContext): Step {
  const { now, settings } = ctx;
  if (state.state !== 'offboarded' || result.verdict !== 'usable') return { state, commands: [] };
  const cause = state.closure?.cause;
  const bySend = cause === 'send_error' || cause === 'failed_status';
  if (bySend) {
    const closedAt = Date.parse(state.closure!.at);
    if (now - closedAt < (settings.probeGraceMs ?? 0)) return { state, commands: [] };
  }
  const reopen: ReopenCause =
    cause === 'credentials' ? 'credentials_restored' : bySend ? 'probe_after_grace' : 'reconnected_by_probe';
  const noted = note(state, { type: 'PROBE', outcome: `usable: ${reopen}`, detail: result.detail }, now);
  const moved = moveTo(reopened(noted, reopen, now, result.detail), 'draining', undefined, now);
  return then(
    moved,
    {
      type: 'alert',
      alert: {
        kind: 'probeReopened',
        wabaId: state.wabaId,
        cause: reopen,
        ...(cause ? { closedBy: cause } : {}),
        detail: result.detail,
      },
    },
    { type: 'startDrain', mode: 'reconnected', onlyIfQueued: true },
  );
}

function abandon(state: LifecycleState, reason: string, ctx: StepContext): Step {
  const { settings, now } = ctx;
  const moved = moveTo(state, 'reconnect_abandoned', reason, now);
  const fail: Command[] =
    settings.onAbandon === 'fail' ? [{ type: 'failQueue', reason: RECONNECT_TIMEOUT, queueEmptied: false }] : [];
  return then(
    moved,
    ...fail,
    { type: 'countQueued' },
    {
      type: 'alert',
      alert: {
        kind: 'abandoned',
        wabaId: state.wabaId,
        level: settings.escalation.length,
        reason,
        onAbandon: settings.onAbandon,
      },
    },
  );
}

/**
 * Escalation `level` of these settings. A deployment may have shortened `ESCALATION_LEVELS` since
 * the level was chosen: a level past the last one is the last one (abandonment), never an error.
 */
function escalate(state: LifecycleState, wanted: number, ctx: StepContext): Step {
  const { settings, now } = ctx;
  const level = Math.min(wanted, settings.escalation.length);
  const def = settings.escalation[level - 1];
  if (!def) return { state, commands: [] }; // no levels at all: nothing to escalate to
  // A bad token is not the WABA's fault: its gate is never abandoned (the probe reopens it).
  const final = level === settings.escalation.length && state.closure?.cause !== 'credentials';
  const noted = note(
    { ...state, escalationLevel: level },
    { type: 'ESCALATED', outcome: `level ${level} (${def.severity})${final ? ', final' : ''}` },
    now,
  );
  if (final) return abandon(noted, `no ACCOUNT_RECONNECTED after ${minutes(def.afterMs)} min`, ctx);
  const moved = moveTo(noted, 'offboarded', noted.reason, now);
  return then(moved, {
    type: 'alert',
    alert: {
      kind: 'escalated',
      wabaId: state.wabaId,
      level,
      severity: def.severity,
      afterMs: def.afterMs,
      since: moved.state.since,
      ...(state.closure?.detail ? { cause: state.closure.detail } : {}),
    },
  });
}

function finishDrain(state: LifecycleState, result: DrainResult, ctx: StepContext): Step {
  const { now } = ctx;
  if (result.stopped === 'credentials') {
    // Meta refused the token, not the account: the rest waits for the token's pause (its own
    // workflow asks for a drain when the token works again); the WABA's gate opens as usual.
    const noted = note(
      state,
      { type: 'SEND_ACCOUNT_UNUSABLE', outcome: 'drain paused: Meta refuses the token', detail: result.detail },
      now,
    );
    return state.state === 'draining' ? moveTo(noted, 'connected', undefined, now) : save(noted, now);
  }
  if (result.stopped === 'account_unusable') {
    const noted = note(
      state,
      { type: 'SEND_ACCOUNT_UNUSABLE', outcome: 'drain stopped; gate stays closed', detail: result.detail },
      now,
    );
    return afterDrainStopped(
      noted,
      {
        action: 'closeGate',
        type: 'SEND_ACCOUNT_UNUSABLE',
        detail: result.detail,
        closure: { cause: 'send_error', ...(result.detail ? { detail: result.detail } : {}) },
      },
      ctx,
    );
  }
  // Entries queued while the gate was opening (or while a stray drain ran) are drained next.
  const stray: Command = { type: 'startDrain', mode: 'stray', onlyIfQueued: true };
  if (state.state === 'draining') {
    // The queue was empty when the drain returned: open the gate.
    const moved = moveTo(state, 'connected', undefined, now);
    const { sent, failed, expired } = result;
    return then(
      moved,
      { type: 'alert', alert: { kind: 'reconnected', wabaId: state.wabaId, sent, failed, expired } },
      stray,
    );
  }
  return { state, commands: [{ type: 'countQueued' }, ...(state.state === 'connected' ? [stray] : [])] };
}
