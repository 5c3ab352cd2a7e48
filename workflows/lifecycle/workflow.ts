import {
  ActivityCancellationType,
  ApplicationFailure,
  CancellationScope,
  allHandlersFinished,
  condition,
  continueAsNew,
  isCancellation,
  log,
  patched,
  proxyActivities,
  proxyLocalActivities,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../../activities';
import { ALERT_ACTIVITY_OPTIONS, SETTINGS_ACTIVITY_OPTIONS } from '../activity-options';
import type { AlertInput, DrainInput, DrainResult } from '../../activities/types';
import { alertInBackground } from '../alerts';
import {
  EscalationLevelKey,
  FAILURE_TYPES,
  GateCauseKey,
  WabaStateKey,
  gateProbedSignal,
  lifecycleEventSignal,
  operatorActionUpdate,
  stateQuery,
  type LifecycleEvent,
  type LifecycleInput,
  type LifecycleSettings,
  type OperatorAction,
  type ProbeResult,
  type WabaLifecycleView,
  type WabaState,
} from '../contracts';
import {
  alertContent,
  currentDetails,
  describeWakeUp,
  nextWakeUp,
  onLoad,
  refusal,
  transition,
  view,
  type AlertSpec,
  type Command,
  type LifecycleState,
  type MachineInput,
  type PatchId,
} from './machine';

/**
 * `patched()` ids of the shell's own changes (the machine's are `PATCHES` in ./machine.ts);
 * ARCHITECTURE.md, "Versioning", says when to add one and when to retire it.
 */
const SHELL_PATCHES = {
  /** Probe Meta while the gate is closed (new timers and the `probeGate` activity). */
  probe: 'gate-probe',
  /** Probes back off while the gate stays closed (`probeMaxIntervalMs`). */
  probeBackoff: 'gate-probe-backoff',
  /**
   * The gate probe sweep (workflows/gate-probes.ts) probes on the run's behalf and signals a usable
   * result: no probe timers or `probeGate` activities between escalation levels.
   */
  probeSweep: 'gate-probe-sweep',
  /** `GateCause` search attribute next to `WabaState` and `EscalationLevel`. */
  gateCauseAttribute: 'gate-cause-attribute',
  /** At continue-as-new, an operator update that arrives while handlers finish is applied, not left waiting. */
  continueAsNewUpdate: 'gate-can-update-race',
  /**
   * The lifecycle settings come from the worker's configuration (a local activity) when the run
   * starts and before each escalation level, not from the input frozen by whoever started it.
   */
  settingsFromWorker: 'lifecycle-settings-from-worker',
  /** Continue-as-new hands the keys seen so far to the next run (a repeat after it is still a duplicate). */
  continueAsNewKeys: 'lifecycle-can-carries-keys',
} as const;

const storeActivities = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', maximumInterval: '30 seconds' },
});
// The short store reads and writes (loadWaba, saveWaba, countQueued: one exact-`_id` operation or
// a count of the small queue, milliseconds) as local activities: one marker event each instead of
// an activity's scheduled/started/completed plus a workflow task, same retry policy. A local
// activity retried past its deadline schedules a timer and retries in a later workflow task.
const localStoreActivities = proxyLocalActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', maximumInterval: '30 seconds' },
});
/** Runs recorded before this change used regular activities for the store: they replay that way. */
const LOCAL_STORE_PATCH = 'lifecycle-local-store-activities';
const store = (): Pick<Activities, 'loadWaba' | 'saveWaba' | 'countQueued'> =>
  patched(LOCAL_STORE_PATCH) ? localStoreActivities : storeActivities;
const workerSettings = proxyLocalActivities<Pick<Activities, 'lifecycleSettings'>>(SETTINGS_ACTIVITY_OPTIONS);
const drainer = proxyActivities<Activities>({
  startToCloseTimeout: '24 hours',
  heartbeatTimeout: '20 seconds',
  // A cancelled drain is over only when the activity says so: nothing may be sent after a
  // PARTNER_REMOVED or a new offboarding has been applied.
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  retry: { initialInterval: '1 second', maximumInterval: '30 seconds' },
});
/** The gate's probe of Meta: bounded like alert delivery (a probe that keeps failing is `unknown`). */
const prober = proxyActivities<Pick<Activities, 'probeGate'>>(ALERT_ACTIVITY_OPTIONS);

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
 *
 * This function is the shell: it wires the handlers, waits, and carries out the commands of the
 * pure state machine in ./machine.ts, which makes every decision. The order of the activities,
 * timers and search-attribute upserts is recorded in histories: change it only behind `patched()`.
 */
export async function wabaLifecycleWorkflow(
  input: LifecycleInput,
  pending: LifecycleEvent[] = [],
  /** Keys the previous run saw (handed over by continue-as-new), so a late repeat is still a duplicate. */
  seen: string[] = [],
): Promise<LifecycleRunSummary> {
  const { wabaId } = input;
  // Probing exists only in runs whose settings ask for it and that were first run by code that knows it.
  // Its back-off only in runs that reach this code (an older run's timers keep their cadence).
  const withProbePatch = (s: LifecycleSettings): LifecycleSettings => {
    if (s.probeIntervalMs !== undefined && !patched(SHELL_PATCHES.probe)) {
      return { ...s, probeIntervalMs: undefined, probeMaxIntervalMs: undefined };
    }
    if (s.probeMaxIntervalMs !== undefined && !patched(SHELL_PATCHES.probeBackoff)) {
      return { ...s, probeMaxIntervalMs: undefined };
    }
    return s;
  };
  let settings = withProbePatch(input.settings);
  /** Runs started since the patch read the settings of the worker running them (deployments change them). */
  async function refreshSettings(): Promise<void> {
    if (patched(SHELL_PATCHES.settingsFromWorker)) settings = withProbePatch(await workerSettings.lifecycleSettings());
  }
  const isPatched = (id: PatchId): boolean => patched(id);
  const inbox: LifecycleEvent[] = [...pending];
  const recentKeys: string[] = [...new Set([...seen, ...pending.map((e) => e.key)])].slice(-RECENT_KEYS);
  let operatorRequest: OperatorAction | undefined;
  // Set once the document is loaded; the handlers below run before that and check for it.
  let waba: LifecycleState | undefined;
  // What the last countQueued / failQueue reported (alerts and stray drains read them).
  let queued = 0;
  let failed = 0;
  let eventsApplied = 0;
  let drainScope: CancellationScope | undefined;
  let drainDone: Promise<void> | undefined;
  let drainOutcome: DrainResult | 'cancelled' | undefined;
  const alerts: Promise<void>[] = [];
  let lastProbeAt: number | undefined;
  let lastProbe: (ProbeResult & { at: string }) | undefined;
  /** A usable probe the sweep reported, not yet applied (the latest wins). */
  let sweptProbe: ProbeResult | undefined;
  let nextText = '';

  setHandler(lifecycleEventSignal, (event) => {
    if (recentKeys.includes(event.key)) {
      log.info('duplicate lifecycle event ignored', { wabaId, key: event.key, type: event.type });
      return;
    }
    recentKeys.push(event.key);
    if (recentKeys.length > RECENT_KEYS) recentKeys.shift();
    inbox.push(event);
  });

  setHandler(gateProbedSignal, (result) => {
    sweptProbe = result;
  });

  setHandler(stateQuery, (): WabaLifecycleView => view(wabaId, waba, queued, { next: nextText, lastProbe }));

  // Operators reach this through update-with-start, so it also works when no run is open (an
  // abandoned WABA): the handler then waits for the WABA document to load before deciding.
  setHandler(
    operatorActionUpdate,
    async (action) => {
      await condition(() => waba !== undefined && operatorRequest === undefined);
      const refused = refusal(waba!, action);
      if (refused)
        throw ApplicationFailure.create({ type: FAILURE_TYPES.actionRefused, message: refused, nonRetryable: true });
      operatorRequest = action;
      await condition(() => operatorRequest === undefined);
      return { accepted: true as const, state: waba!.state };
    },
    {
      validator: (action) => {
        if (!action.reason?.trim()) throw new Error('a reason is required');
        const refused = waba && refusal(waba, action);
        if (refused) throw new Error(refused);
      },
    },
  );

  function startDrain(mode: DrainInput['mode']): void {
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

  function alert(spec: AlertSpec): void {
    const full: AlertInput = {
      ...alertContent(spec, { queued, failed }),
      kind: spec.kind,
      wabaId,
      at: new Date().toISOString(),
      state: waba!.state,
      queued,
      runSinks: settings.alertSinks,
    };
    // A failing sink never breaks the workflow: it is logged and the run goes on.
    alerts.push(...alertInBackground(settings.alertSinks, full));
  }

  /** Applies one input to the machine (at the workflow clock's now) and carries out its commands. */
  async function step(machineInput: MachineInput): Promise<void> {
    const next = transition(waba!, machineInput, {
      now: Date.now(),
      settings,
      drainRunning: drainScope !== undefined,
      isPatched,
    });
    waba = next.state;
    for (const command of next.commands) await execute(command);
  }

  /** Applies a probe's answer, the run's own or one the sweep reported. */
  function applyProbe(result: ProbeResult): Promise<void> {
    lastProbeAt = Date.now();
    lastProbe = { ...result, at: new Date(lastProbeAt).toISOString() };
    return step({ kind: 'probed', result });
  }

  /** Carries out one command; each activity is scheduled when its command comes up, in order. */
  async function execute(command: Command): Promise<void> {
    switch (command.type) {
      case 'cancelDrain':
        await cancelDrain();
        return step({ kind: 'drainStopped', then: command.then });
      case 'persist':
        return store().saveWaba(command.waba);
      case 'countQueued':
        queued = await store().countQueued(wabaId);
        return;
      case 'upsertSearchAttributes':
        upsertSearchAttributes([
          { key: WabaStateKey, value: command.state },
          { key: EscalationLevelKey, value: command.escalationLevel },
          ...(patched(SHELL_PATCHES.gateCauseAttribute)
            ? [{ key: GateCauseKey, value: waba?.closure?.cause ?? 'none' }]
            : []),
        ]);
        return;
      case 'probe':
        return applyProbe(await prober.probeGate({ wabaId }));
      case 'startDrain':
        if (!command.onlyIfQueued || queued > 0) startDrain(command.mode);
        return;
      case 'failQueue':
        failed = await drainer.failQueue({ wabaId, reason: command.reason });
        if (command.queueEmptied) queued = 0;
        return;
      case 'alert':
        alert(command.alert);
        return;
      case 'requeueLate':
        // A few point reads and writes (src/sending/late-failure.ts): a local store activity too.
        await localStoreActivities.requeueLateFailure(command.failure);
        return;
    }
  }

  // ---- main loop -------------------------------------------------------------------------
  await refreshSettings();
  waba = await store().loadWaba(wabaId);
  queued = await store().countQueued(wabaId);
  for (const command of onLoad(waba)) await execute(command); // a previous run ended mid-drain

  const wake = (): boolean =>
    inbox.length > 0 || operatorRequest !== undefined || drainOutcome !== undefined || sweptProbe !== undefined;
  for (;;) {
    // Long offboardings stay within history limits: the WABA document carries the state over.
    if (workflowInfo().continueAsNewSuggested && !drainScope && !operatorRequest) {
      if (patched(SHELL_PATCHES.continueAsNewUpdate)) {
        // An operator update may be waiting for the loop: let it in before handing over, or it
        // (and allHandlersFinished) would wait for a loop that never runs again.
        await Promise.all(alerts);
        await condition(() => allHandlersFinished() || operatorRequest !== undefined);
        if (operatorRequest !== undefined) continue;
      }
      break;
    }
    const event = inbox.shift();
    if (event) {
      await step({ kind: 'event', event });
      eventsApplied++;
      continue;
    }
    if (operatorRequest) {
      await step({ kind: 'operator', action: operatorRequest });
      operatorRequest = undefined;
      continue;
    }
    if (drainOutcome !== undefined) {
      const outcome = drainOutcome;
      drainOutcome = undefined;
      // A cancellation nobody asked for changes nothing (cancelDrain consumes the ones it causes).
      if (outcome !== 'cancelled') drainScope = undefined;
      await step({ kind: 'drainEnded', outcome });
      continue;
    }
    if (sweptProbe !== undefined) {
      const result = sweptProbe;
      sweptProbe = undefined;
      await applyProbe(result);
      continue;
    }
    // Runs that reach the sweep leave probing between levels to it (no timer per probe).
    const bySweep = settings.probeIntervalMs !== undefined && patched(SHELL_PATCHES.probeSweep);
    const next = nextWakeUp(
      waba,
      settings,
      drainScope !== undefined,
      lastProbeAt,
      bySweep ? { by: 'sweep', now: Date.now() } : { by: 'timers' },
    );
    nextText = describeWakeUp(next);
    setCurrentDetails(currentDetails(waba, queued, nextText, lastProbe));
    if (next.kind === 'input') {
      await condition(wake);
      continue;
    }
    if (next.kind === 'probe') {
      const waitMs = next.at - Date.now();
      if (waitMs > 0 && (await condition(wake, waitMs))) continue;
      await execute({ type: 'probe' });
      continue;
    }
    if (next.kind === 'escalation') {
      const waitMs = next.at - Date.now();
      if (waitMs > 0 && (await condition(wake, waitMs))) continue;
      if (next.probeFirst) {
        // Each level asks Meta first: a number that works again reopens instead of escalating.
        await execute({ type: 'probe' });
        if (waba.state !== 'offboarded' || wake()) continue;
      }
      await refreshSettings(); // a deployment may have changed the levels, ON_ABANDON or the sinks
      await step({ kind: 'escalation', level: next.level });
      continue;
    }
    // connected, reconnect_abandoned or partner_removed: nothing to wait for. An operator action
    // may still be in flight (its handler waits for the main loop), so wake for it too.
    await Promise.all(alerts);
    await condition(() => allHandlersFinished() || wake());
    if (wake()) continue;
    return { wabaId, finalState: waba.state, eventsApplied };
  }
  await Promise.all(alerts);
  await condition(allHandlersFinished);
  if (patched(SHELL_PATCHES.continueAsNewKeys))
    return continueAsNew<typeof wabaLifecycleWorkflow>(input, inbox, recentKeys);
  return continueAsNew<typeof wabaLifecycleWorkflow>(input, inbox);
}
