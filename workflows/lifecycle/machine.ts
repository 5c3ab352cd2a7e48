/**
 * The per-WABA lifecycle as a pure state machine: every decision the lifecycle workflow makes,
 * as functions of (state, input, context) that return the next state and the commands to carry
 * out. No Temporal, no I/O, no clock: the workflow shell (./workflow.ts) passes the time in,
 * runs the commands through activities, in order, and feeds back the one thing a step may have
 * to wait for (a drain it asked to stop has stopped). Queue counts stay with the shell: alerts
 * are data rendered with them (`alertContent`), and a stray drain may be conditional on one.
 *
 * Nothing here is mutated: every function returns new objects.
 */
import type { AlertInput, DrainInput, DrainResult } from '../../activities/types';
import type { WabaSnapshot } from '../../src/adapters/store/wabas';
import type {
  EscalationLevel,
  EventLogEntry,
  LifecycleEvent,
  LifecycleSettings,
  OperatorAction,
  REASONS,
  WabaLifecycleView,
  WabaState,
} from '../contracts';

/** The machine's state: the WABA document as the workflow carries it (and `persist` writes it). */
export type LifecycleState = WabaSnapshot;

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
  | { action: 'closeGate'; type: 'ACCOUNT_OFFBOARDED' | 'SEND_ACCOUNT_UNUSABLE'; detail?: string }
  | { action: 'removePartner'; metaTime?: number; detail?: string };

/** What the machine reacts to. */
export type MachineInput =
  /** A lifecycle event from the inbox (already deduplicated by key). */
  | { kind: 'event'; event: LifecycleEvent }
  /** An operator action the update handler accepted (see `refusal`). */
  | { kind: 'operator'; action: OperatorAction }
  /** The WABA has been offboarded long enough for this escalation level (see `nextWakeUp`). */
  | { kind: 'escalation'; level: number }
  /** The drain activity returned, or was cancelled without the machine asking for it. */
  | { kind: 'drainEnded'; outcome: DrainResult | 'cancelled' }
  /** A drain stopped by a `cancelDrain` command has stopped sending; `then` says what follows. */
  | { kind: 'drainStopped'; then: AfterDrainStopped };

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
    }
  | { kind: 'abandoned'; wabaId: string; level: number; reason: string; onAbandon: LifecycleSettings['onAbandon'] }
  | { kind: 'reconnected'; wabaId: string; sent: number; failed: number; expired: number };

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
  /** `saveWaba(waba)`. */
  | { type: 'persist'; waba: LifecycleState }
  /** `countQueued(wabaId)`; the count is what later `alert`s and `startDrain.onlyIfQueued` see. */
  | { type: 'countQueued' }
  /** Set `WabaState` and `EscalationLevel`. */
  | { type: 'upsertSearchAttributes'; state: WabaState; escalationLevel: number }
  /** Start `drainQueue({ wabaId, mode })` in the background; with `onlyIfQueued`, only when the last count is above 0. */
  | { type: 'startDrain'; mode: DrainInput['mode']; onlyIfQueued: boolean }
  /** `failQueue({ wabaId, reason })`; its result is the `failed` alerts see. With `queueEmptied`, the count becomes 0. */
  | { type: 'failQueue'; reason: string; queueEmptied: boolean }
  /** `deliverAlert` to every sink, in the background. */
  | { type: 'alert'; alert: AlertSpec };

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
  /** Wait for an event, an operator action or a drain outcome, however long it takes. */
  | { kind: 'input' }
  /** Wait for input, but no later than `at` (epoch ms): then apply escalation `level`. */
  | { kind: 'escalation'; level: number; at: number }
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
      return input.outcome === 'cancelled' ? { state, commands: [] } : finishDrain(state, input.outcome, ctx);
    case 'drainStopped':
      return afterDrainStopped(state, input.then, ctx);
  }
}

/** What a freshly started run does with the WABA it loaded: resume a drain a previous run left open. */
export function onLoad(state: LifecycleState): Command[] {
  return state.state === 'draining' ? [{ type: 'startDrain', mode: 'reconnected', onlyIfQueued: false }] : [];
}

/** Why an operator action does not apply to the WABA as it is now; undefined when it does. */
export function refusal(state: LifecycleState, action: OperatorAction): string | undefined {
  if (action.action === 'force_resume' && state.state !== 'offboarded' && state.state !== 'reconnect_abandoned') {
    return `force_resume applies to an offboarded or abandoned WABA, not to one that is ${state.state}`;
  }
  if (action.action === 'force_abandon' && state.state !== 'offboarded') {
    return `force_abandon applies to an offboarded WABA, not to one that is ${state.state}`;
  }
  return undefined;
}

/** What to wait for when the inbox, the operator request and the drain outcome are all empty. */
export function nextWakeUp(state: LifecycleState, settings: LifecycleSettings, drainRunning: boolean): WakeUp {
  if (drainRunning) return { kind: 'input' };
  if (state.state !== 'offboarded') return { kind: 'done' };
  const next = settings.escalation[state.escalationLevel];
  if (!next) return { kind: 'input' };
  return { kind: 'escalation', level: next.level, at: Date.parse(state.since) + next.afterMs };
}

/** The answer of the `state` query; before the WABA is loaded, a connected WABA with no history. */
export function view(wabaId: string, state: LifecycleState | undefined, queued: number): WabaLifecycleView {
  return {
    wabaId,
    state: state?.state ?? 'connected',
    since: state?.since ?? '',
    escalationLevel: state?.escalationLevel ?? 0,
    queued,
    lastEvent: state?.events[state.events.length - 1],
    events: state?.events ?? [],
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
        text: `WABA ${spec.wabaId} has been offboarded since ${spec.since}; ${counts.queued} message(s) are queued. Waiting for ACCOUNT_RECONNECTED. If another partner onboarded the WABA, reconnection will never come.`,
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

/** Writes the state as it is and counts the queue again. */
function save(state: LifecycleState, now: number): Step {
  const next = { ...state, updatedAt: iso(now) };
  return { state: next, commands: [{ type: 'persist', waba: next }, { type: 'countQueued' }] };
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

function then(step: Step, ...commands: Command[]): Step {
  return { state: step.state, commands: [...step.commands, ...commands] };
}

function applyEvent(state: LifecycleState, e: LifecycleEvent, ctx: StepContext): Step {
  const { now } = ctx;
  const entry = (outcome: string): Omit<EventLogEntry, 'at'> => ({
    type: e.type,
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
      if (w.state === 'offboarded' || w.state === 'reconnect_abandoned')
        return recorded(w, 'joined the open offboarding');
      // Connected or draining: close the gate, once any drain has stopped sending.
      const noted = note(w, entry('applied'), now);
      const close: AfterDrainStopped = { action: 'closeGate', type: e.type, detail: e.detail };
      if (ctx.drainRunning) return { state: noted, commands: [{ type: 'cancelDrain', then: close }] };
      return afterDrainStopped(noted, close, ctx);
    }
    case 'ACCOUNT_RECONNECTED': {
      const w =
        e.metaTime === undefined
          ? state
          : { ...state, lastReconnectedMetaTime: Math.max(state.lastReconnectedMetaTime ?? 0, e.metaTime) };
      if (w.state === 'partner_removed') return recorded(w, 'ignored: partner removed');
      if (e.metaTime !== undefined && w.lastOffboardedMetaTime !== undefined && e.metaTime < w.lastOffboardedMetaTime) {
        return recorded(w, 'stale: older than the current offboarding');
      }
      if (w.state === 'offboarded' || w.state === 'reconnect_abandoned') {
        const moved = moveTo(note(w, entry('draining'), now), 'draining', undefined, now);
        return then(moved, { type: 'startDrain', mode: 'reconnected', onlyIfQueued: false });
      }
      return recorded(w, w.state === 'draining' ? 'duplicate: already draining' : 'no offboarding open; remembered');
    }
    case 'PARTNER_REMOVED': {
      if (state.state === 'partner_removed') return recorded(state, 'duplicate');
      const remove: AfterDrainStopped = { action: 'removePartner', metaTime: e.metaTime, detail: e.detail };
      if (ctx.drainRunning) return { state, commands: [{ type: 'cancelDrain', then: remove }] };
      return afterDrainStopped(state, remove, ctx);
    }
    case 'QUEUE_STRAY': {
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
    const moved = moveTo(state, 'offboarded', next.detail ?? next.type, now);
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
    moveTo(noted, 'partner_removed', next.detail ?? 'PARTNER_REMOVED', now),
    { type: 'failQueue', reason: PARTNER_REMOVED, queueEmptied: true },
    { type: 'alert', alert: { kind: 'partnerRemoved', wabaId: state.wabaId, detail: next.detail } },
  );
}

function applyOperator(state: LifecycleState, a: OperatorAction, ctx: StepContext): Step {
  const { now } = ctx;
  const detail = `${a.reason}${a.operator ? ` (by ${a.operator})` : ''}`;
  if (a.action === 'force_resume') {
    const noted = note(state, { type: 'OPERATOR_FORCE_RESUME', outcome: 'draining', detail }, now);
    return then(moveTo(noted, 'draining', `force_resume: ${a.reason}`, now), {
      type: 'startDrain',
      mode: 'reconnected',
      onlyIfQueued: false,
    });
  }
  const noted = note(state, { type: 'OPERATOR_FORCE_ABANDON', outcome: 'abandoned', detail }, now);
  return abandon(noted, `force_abandon: ${a.reason}`, ctx);
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

function escalate(state: LifecycleState, level: number, ctx: StepContext): Step {
  const { settings, now } = ctx;
  const def = settings.escalation[level - 1];
  if (!def) throw new Error(`no escalation level ${level} in the settings`);
  const final = level === settings.escalation.length;
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
    },
  });
}

function finishDrain(state: LifecycleState, result: DrainResult, ctx: StepContext): Step {
  const { now } = ctx;
  if (result.stopped === 'account_unusable') {
    const noted = note(
      state,
      { type: 'SEND_ACCOUNT_UNUSABLE', outcome: 'drain stopped; gate stays closed', detail: result.detail },
      now,
    );
    return afterDrainStopped(noted, { action: 'closeGate', type: 'SEND_ACCOUNT_UNUSABLE', detail: result.detail }, ctx);
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
