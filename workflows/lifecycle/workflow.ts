import {
  ActivityCancellationType,
  ApplicationFailure,
  CancellationScope,
  allHandlersFinished,
  condition,
  continueAsNew,
  isCancellation,
  log,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../../activities';
import type { AlertInput, DrainResult } from '../../activities/types';
import type { WabaSnapshot } from '../../src/adapters/store/wabas';
import {
  EscalationLevelKey,
  FAILURE_TYPES,
  REASONS,
  WabaStateKey,
  lifecycleEventSignal,
  operatorActionUpdate,
  stateQuery,
  type EventLogEntry,
  type LifecycleEvent,
  type LifecycleInput,
  type OperatorAction,
  type WabaLifecycleView,
  type WabaState,
} from '../contracts';

const store = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', maximumInterval: '30 seconds' },
});
const drainer = proxyActivities<Activities>({
  startToCloseTimeout: '24 hours',
  heartbeatTimeout: '20 seconds',
  // A cancelled drain is over only when the activity says so: nothing may be sent after a
  // PARTNER_REMOVED or a new offboarding has been applied.
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  retry: { initialInterval: '1 second', maximumInterval: '30 seconds' },
});
const alerter = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumAttempts: 6 },
});

/** How a run of the lifecycle workflow ended; its result. */
export interface LifecycleRunSummary {
  wabaId: string;
  finalState: WabaState;
  eventsApplied: number;
}

const RECENT_KEYS = 200;

/**
 * One run per WABA at a time (id `waba-reconnect/<wabaId>`), started by signal-with-start from
 * any lifecycle event. The WABA document in MongoDB is the durable truth and this workflow is its
 * only writer: a run loads it, applies events in arrival order, and ends as soon as nothing is
 * left to wait for (connected, abandoned, partner removed), so every offboarding cycle is a fresh,
 * short run under the same id.
 *
 * While offboarded the send gate is closed (sends queue), and escalation levels raise alerts at
 * the configured delays; the last one marks the WABA `reconnect_abandoned`. On reconnection the
 * queue is drained in order (one long activity, batched and paced) before the gate reopens.
 */
export async function wabaLifecycleWorkflow(
  input: LifecycleInput,
  pending: LifecycleEvent[] = [],
): Promise<LifecycleRunSummary> {
  const { wabaId, settings } = input;
  const inbox: LifecycleEvent[] = [...pending];
  const recentKeys: string[] = pending.map((e) => e.key);
  let operatorRequest: OperatorAction | undefined;
  // Set once the document is loaded; the handlers above run before that and check for it.
  // eslint-disable-next-line prefer-const
  let waba: WabaSnapshot | undefined;
  let queued = 0;
  let eventsApplied = 0;
  let drainScope: CancellationScope | undefined;
  let drainDone: Promise<void> | undefined;
  let drainOutcome: DrainResult | 'cancelled' | undefined;
  const alerts: Promise<void>[] = [];

  setHandler(lifecycleEventSignal, (event) => {
    if (recentKeys.includes(event.key)) {
      log.info('duplicate lifecycle event ignored', { wabaId, key: event.key, type: event.type });
      return;
    }
    recentKeys.push(event.key);
    if (recentKeys.length > RECENT_KEYS) recentKeys.shift();
    inbox.push(event);
  });

  setHandler(stateQuery, (): WabaLifecycleView => view());

  /** Why an operator action does not apply to the WABA as it is now; undefined when it does. */
  function refusal(action: OperatorAction, w: WabaSnapshot): string | undefined {
    if (action.action === 'force_resume' && w.state !== 'offboarded' && w.state !== 'reconnect_abandoned') {
      return `force_resume applies to an offboarded or abandoned WABA, not to one that is ${w.state}`;
    }
    if (action.action === 'force_abandon' && w.state !== 'offboarded') {
      return `force_abandon applies to an offboarded WABA, not to one that is ${w.state}`;
    }
    return undefined;
  }

  // Operators reach this through update-with-start, so it also works when no run is open (an
  // abandoned WABA): the handler then waits for the WABA document to load before deciding.
  setHandler(
    operatorActionUpdate,
    async (action) => {
      await condition(() => waba !== undefined && operatorRequest === undefined);
      const refused = refusal(action, waba!);
      if (refused)
        throw ApplicationFailure.create({ type: FAILURE_TYPES.actionRefused, message: refused, nonRetryable: true });
      operatorRequest = action;
      await condition(() => operatorRequest === undefined);
      return { accepted: true as const, state: waba!.state };
    },
    {
      validator: (action) => {
        if (!action.reason?.trim()) throw new Error('a reason is required');
        const refused = waba && refusal(action, waba);
        if (refused) throw new Error(refused);
      },
    },
  );

  function view(): WabaLifecycleView {
    const w = waba;
    return {
      wabaId,
      state: w?.state ?? 'connected',
      since: w?.since ?? '',
      escalationLevel: w?.escalationLevel ?? 0,
      queued,
      lastEvent: w?.events[w.events.length - 1],
      events: w?.events ?? [],
    };
  }

  const now = (): string => new Date().toISOString();

  function note(entry: Omit<EventLogEntry, 'at'>): void {
    waba!.events.push({ ...entry, at: now() });
    if (waba!.events.length > 20) waba!.events.shift();
  }

  async function transition(state: WabaState, reason?: string): Promise<void> {
    const w = waba!;
    if (w.state !== state) {
      w.state = state;
      w.since = now();
      if (state === 'offboarded' || state === 'connected') w.escalationLevel = 0;
    }
    w.reason = reason;
    await persist();
    upsertSearchAttributes([
      { key: WabaStateKey, value: w.state },
      { key: EscalationLevelKey, value: w.escalationLevel },
    ]);
  }

  async function persist(): Promise<void> {
    waba!.updatedAt = now();
    await store.saveWaba(waba!);
    queued = await store.countQueued(wabaId);
  }

  function alert(a: Omit<AlertInput, 'wabaId' | 'at' | 'state' | 'queued'>): void {
    const full: AlertInput = { ...a, wabaId, at: now(), state: waba!.state, queued };
    for (const sink of settings.alertSinks) {
      alerts.push(
        alerter.deliverAlert(sink, full).catch((err: unknown) => {
          // A failing sink never breaks the workflow: it is logged and the run goes on.
          log.warn('alert sink failed after retries', { wabaId, sink, error: String(err) });
        }),
      );
    }
  }

  function startDrain(mode: 'reconnected' | 'stray'): void {
    drainOutcome = undefined;
    drainScope = new CancellationScope();
    drainDone = drainScope
      .run(() => drainer.drainQueue({ wabaId, mode }))
      .then(
        (result: DrainResult) => {
          drainOutcome = result;
        },
        (err: unknown) => {
          if (isCancellation(err)) drainOutcome = 'cancelled';
          else throw err;
        },
      );
  }

  /** Cancels a running drain and waits until the activity has stopped sending. */
  async function cancelDrain(): Promise<void> {
    if (!drainScope) return;
    drainScope.cancel();
    await drainDone;
    drainScope = undefined;
    drainOutcome = undefined;
  }

  async function close(type: LifecycleEvent['type'], detail: string | undefined): Promise<void> {
    await cancelDrain();
    await transition('offboarded', detail ?? type);
    if (type === 'SEND_ACCOUNT_UNUSABLE') {
      alert({
        level: 0,
        severity: 'warning',
        title: 'Send gate closed: Meta says the account cannot send',
        text: `A send for WABA ${wabaId} failed with an "account unusable" error (${detail ?? 'no detail'}). Sends are queued until ACCOUNT_RECONNECTED or an operator force-resumes.`,
      });
    }
  }

  async function apply(e: LifecycleEvent): Promise<void> {
    const w = waba!;
    const state = w.state;
    let outcome = 'applied';
    switch (e.type) {
      case 'ACCOUNT_OFFBOARDED':
      case 'SEND_ACCOUNT_UNUSABLE': {
        if (e.metaTime !== undefined) w.lastOffboardedMetaTime = Math.max(w.lastOffboardedMetaTime ?? 0, e.metaTime);
        if (state === 'partner_removed') outcome = 'ignored: partner removed';
        else if (
          e.metaTime !== undefined &&
          w.lastReconnectedMetaTime !== undefined &&
          e.metaTime <= w.lastReconnectedMetaTime
        ) {
          outcome = 'stale: a later reconnection was already seen';
        } else if (state === 'offboarded' || state === 'reconnect_abandoned') outcome = 'joined the open offboarding';
        else {
          note({ type: e.type, metaTime: e.metaTime, outcome, detail: e.detail });
          await close(e.type, e.detail);
          return;
        }
        break;
      }
      case 'ACCOUNT_RECONNECTED': {
        if (e.metaTime !== undefined) w.lastReconnectedMetaTime = Math.max(w.lastReconnectedMetaTime ?? 0, e.metaTime);
        if (state === 'partner_removed') outcome = 'ignored: partner removed';
        else if (
          e.metaTime !== undefined &&
          w.lastOffboardedMetaTime !== undefined &&
          e.metaTime < w.lastOffboardedMetaTime
        ) {
          outcome = 'stale: older than the current offboarding';
        } else if (state === 'offboarded' || state === 'reconnect_abandoned') {
          note({ type: e.type, metaTime: e.metaTime, outcome: 'draining', detail: e.detail });
          await transition('draining');
          startDrain('reconnected');
          return;
        } else outcome = state === 'draining' ? 'duplicate: already draining' : 'no offboarding open; remembered';
        break;
      }
      case 'PARTNER_REMOVED': {
        if (state === 'partner_removed') outcome = 'duplicate';
        else {
          await cancelDrain();
          note({ type: e.type, metaTime: e.metaTime, outcome, detail: e.detail });
          await transition('partner_removed', e.detail ?? 'PARTNER_REMOVED');
          const failed = await drainer.failQueue({ wabaId, reason: REASONS.partnerRemoved });
          queued = 0;
          alert({
            level: 0,
            severity: 'critical',
            title: 'Partner removed: access to the WABA is gone',
            text: `WABA ${wabaId} is no longer shared with us (${e.detail ?? 'no reason given'}). ${failed} queued message(s) failed with reason partner_removed; new sends are refused.`,
          });
          return;
        }
        break;
      }
      case 'QUEUE_STRAY': {
        if (state === 'connected' && !drainScope) {
          startDrain('stray');
          outcome = 'draining stray entries';
        } else outcome = 'queue will be drained by the open cycle';
        break;
      }
    }
    note({ type: e.type, metaTime: e.metaTime, outcome, detail: e.detail });
    await persist();
  }

  async function applyOperator(a: OperatorAction): Promise<void> {
    const detail = `${a.reason}${a.operator ? ` (by ${a.operator})` : ''}`;
    if (a.action === 'force_resume') {
      note({ type: 'OPERATOR_FORCE_RESUME', outcome: 'draining', detail });
      await transition('draining', `force_resume: ${a.reason}`);
      startDrain('reconnected');
    } else {
      note({ type: 'OPERATOR_FORCE_ABANDON', outcome: 'abandoned', detail });
      await abandon(`force_abandon: ${a.reason}`);
    }
  }

  async function abandon(reason: string): Promise<void> {
    await transition('reconnect_abandoned', reason);
    const failed =
      settings.onAbandon === 'fail' ? await drainer.failQueue({ wabaId, reason: REASONS.reconnectTimeout }) : 0;
    queued = await store.countQueued(wabaId);
    alert({
      level: settings.escalation.length,
      severity: 'critical',
      title: 'Reconnection abandoned',
      text:
        `WABA ${wabaId} did not reconnect (${reason}). ` +
        (settings.onAbandon === 'fail'
          ? `${failed} queued message(s) failed with reason reconnect_timeout.`
          : `${queued} message(s) stay queued.`) +
        ' A later ACCOUNT_RECONNECTED still drains and reopens the gate.',
    });
  }

  async function escalateTo(level: number): Promise<void> {
    const def = settings.escalation[level - 1]!;
    const final = level === settings.escalation.length;
    waba!.escalationLevel = level;
    note({ type: 'ESCALATED', outcome: `level ${level} (${def.severity})${final ? ', final' : ''}` });
    if (final) {
      await abandon(`no ACCOUNT_RECONNECTED after ${Math.round(def.afterMs / 60_000)} min`);
      return;
    }
    await transition('offboarded', waba!.reason);
    alert({
      level,
      severity: def.severity,
      title: `WABA offboarded for ${Math.round(def.afterMs / 60_000)} min (level ${level})`,
      text: `WABA ${wabaId} has been offboarded since ${waba!.since}; ${queued} message(s) are queued. Waiting for ACCOUNT_RECONNECTED. If another partner onboarded the WABA, reconnection will never come.`,
    });
  }

  async function finishDrain(result: DrainResult): Promise<void> {
    drainScope = undefined;
    if (result.stopped === 'account_unusable') {
      note({ type: 'SEND_ACCOUNT_UNUSABLE', outcome: 'drain stopped; gate stays closed', detail: result.detail });
      await close('SEND_ACCOUNT_UNUSABLE', result.detail);
      return;
    }
    if (waba!.state === 'draining') {
      // The queue was empty when the drain returned; open the gate (persist counts the queue
      // again, so entries queued while it was opening are drained next: their senders also ask).
      await transition('connected');
      alert({
        level: 0,
        severity: 'warning',
        title: 'WABA reconnected: queued messages sent',
        text: `WABA ${wabaId} is back on the Cloud API; ${result.sent} queued message(s) sent, ${result.failed} failed, ${result.expired} expired. Only the Cloud API companion is restored: the client must re-link WhatsApp Web and other companion devices by hand.`,
      });
    } else {
      queued = await store.countQueued(wabaId);
    }
    if (queued > 0 && waba!.state === 'connected') startDrain('stray');
  }

  // ---- main loop -------------------------------------------------------------------------
  const loaded = await store.loadWaba(wabaId);
  waba = loaded;
  queued = await store.countQueued(wabaId);
  if (loaded.state === 'draining') startDrain('reconnected'); // a previous run ended mid-drain

  for (;;) {
    // Long offboardings stay within history limits: the WABA document carries the state over.
    if (workflowInfo().continueAsNewSuggested && !drainScope && !operatorRequest) break;
    const event = inbox.shift();
    if (event) {
      await apply(event);
      eventsApplied++;
      continue;
    }
    if (operatorRequest) {
      await applyOperator(operatorRequest);
      operatorRequest = undefined;
      continue;
    }
    if (drainOutcome !== undefined) {
      const outcome = drainOutcome;
      drainOutcome = undefined;
      if (outcome !== 'cancelled') await finishDrain(outcome);
      continue;
    }
    const wake = (): boolean => inbox.length > 0 || operatorRequest !== undefined || drainOutcome !== undefined;

    if (drainScope) {
      await condition(wake);
      continue;
    }
    if (loaded.state === 'offboarded') {
      const next = settings.escalation[loaded.escalationLevel];
      if (!next) {
        await condition(wake);
        continue;
      }
      const waitMs = Date.parse(loaded.since) + next.afterMs - Date.now();
      if (waitMs > 0 && (await condition(wake, waitMs))) continue;
      await escalateTo(next.level);
      continue;
    }
    // connected, reconnect_abandoned or partner_removed: nothing to wait for. An operator action
    // may still be in flight (its handler waits for the main loop), so wake for it too.
    await Promise.all(alerts);
    await condition(() => allHandlersFinished() || wake());
    if (wake()) continue;
    return { wabaId, finalState: loaded.state, eventsApplied };
  }
  await Promise.all(alerts);
  await condition(allHandlersFinished);
  return continueAsNew<typeof wabaLifecycleWorkflow>(input, inbox);
}
