import {
  ActivityCancellationType,
  ApplicationFailure,
  CancellationScope,
  allHandlersFinished,
  condition,
  continueAsNew,
  log,
  proxyActivities,
  proxyLocalActivities,
  setCurrentDetails,
  setHandler,
  sleep,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { QueueCount } from './lifecycle.activities';
import { ALERT_ACTIVITY_OPTIONS, SETTINGS_ACTIVITY_OPTIONS } from '../activity-options';
import type { DrainInput, DrainResult } from '../contracts';
import { alertInBackground } from '../alerts/alerts.workflow';
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
  type LifecycleRunSummary,
  type LifecycleSettings,
  type OperatorAction,
  type ProbeResult,
} from '../contracts';
import {
  composeAlert,
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
} from './machine';

// The store's reads and writes (openWaba, saveWaba, countQueued, requeueLateFailure: a few
// exact-`_id` operations, a count of the queue or a look at its head, milliseconds) and the worker's settings
// are local activities: one marker event each, and several in one workflow task, instead of an
// activity's scheduled/started/completed plus a workflow task each. They retry until the store
// answers (a failover delays a step, never fails the run); a local activity retried past its
// deadline schedules a timer and retries in a later workflow task.
const store = proxyLocalActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', maximumInterval: '30 seconds' },
});
const workerSettings = proxyLocalActivities<Pick<Activities, 'lifecycleSettings'>>(SETTINGS_ACTIVITY_OPTIONS);
const drainer = proxyActivities<Activities>({
  startToCloseTimeout: '24 hours',
  heartbeatTimeout: '20 seconds',
  // A cancelled drain is over only when the activity says so (or its worker is gone, see
  // `cancelDrain`): nothing may be sent after a PARTNER_REMOVED or a new offboarding is applied.
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  retry: { initialInterval: '1 second', maximumInterval: '30 seconds' },
});
/** The gate's probe of Meta before an escalation level: bounded like alert delivery. */
const prober = proxyActivities<Pick<Activities, 'probeGate'>>(ALERT_ACTIVITY_OPTIONS);

/** An `alert` command. */
type AlertCommand = Extract<Command, { type: 'alert' }>;

/** The workflow clock's now, as ISO text. */
const now = (): string => new Date().toISOString();

const RECENT_KEYS = 200;
/** Events applied in one workflow task at most before it is closed (see the loop). */
const STEPS_PER_TASK = 8;
const EMPTY_DRAIN: DrainResult = { sent: 0, failed: 0, expired: 0, alreadySettled: 0 };

/**
 * One WABA's run: the machine's state as loaded from the store, what the handlers received and
 * not yet applied, and the drain in the background. The workflow function below wires the
 * handlers to it and runs its loop; every decision is the pure machine's (./machine.ts).
 */
class LifecycleRun {
  settings: LifecycleSettings;
  /** Set once the WABA document is loaded; handlers that run before that check for it. */
  waba: LifecycleState | undefined;
  readonly inbox: LifecycleEvent[];
  readonly recentKeys: string[];
  operatorRequest: OperatorAction | undefined;
  /** A usable probe the sweep reported, not yet applied (the latest wins). */
  sweptProbe: ProbeResult | undefined;
  /** What the last count of the queue (or `failQueue`) reported: alerts and stray drains read them. */
  queued = 0;
  /**
   * `exact`: `queued` is the queue's length; `any`: the last save only asked whether anything
   * waits, and `queued` is 1 for "one or more" (or 0).
   */
  queuedCount: QueueCount = 'exact';
  failed = 0;
  eventsApplied = 0;
  lastProbe: (ProbeResult & { at: string }) | undefined;
  nextText = '';
  readonly alerts: Promise<void>[] = [];
  private drainScope: CancellationScope | undefined;
  private drainDone: Promise<void> | undefined;
  private cancelling = false;
  /** How the background drain ended, when the run did not ask it to stop; consumed by the loop. */
  drainOutcome: DrainResult | 'interrupted' | undefined;
  /** The search attributes as last written, so a step that leaves them as they are writes none. */
  private attributes = '';

  constructor(
    readonly wabaId: string,
    settings: LifecycleSettings,
    pending: LifecycleEvent[],
    seen: string[],
  ) {
    this.settings = settings;
    this.inbox = [...pending];
    this.recentKeys = [...new Set([...seen, ...pending.map((e) => e.key)])].slice(-RECENT_KEYS);
  }

  get drainRunning(): boolean {
    return this.drainScope !== undefined;
  }

  /** Something to apply: an event, an operator action, a drain outcome or a swept probe. */
  hasInput(): boolean {
    return (
      this.inbox.length > 0 ||
      this.operatorRequest !== undefined ||
      this.drainOutcome !== undefined ||
      this.sweptProbe !== undefined
    );
  }

  receive(event: LifecycleEvent): void {
    if (this.recentKeys.includes(event.key)) {
      log.info('duplicate lifecycle event ignored', { wabaId: this.wabaId, key: event.key, type: event.type });
      return;
    }
    this.recentKeys.push(event.key);
    if (this.recentKeys.length > RECENT_KEYS) this.recentKeys.shift();
    this.inbox.push(event);
  }

  /** Loads settings, document and queue length (one local activity), then resumes a drain left open. */
  async open(): Promise<void> {
    const opened = await store.openWaba(this.wabaId);
    this.settings = opened.settings;
    this.queued = opened.queued;
    this.waba = opened.waba;
    for (const command of onLoad(opened.waba)) await this.execute(command);
  }

  /** Applies one input to the machine (at the workflow clock's now) and carries out its commands. */
  async step(input: MachineInput): Promise<void> {
    const next = transition(this.waba!, input, {
      now: Date.now(),
      settings: this.settings,
      drainRunning: this.drainRunning,
    });
    this.waba = next.state;
    // Every alert carries the queue's length (and some texts show it): a step that raises one has
    // its save count the queue. The others only need to know whether anything waits (what
    // `startDrain.onlyIfQueued` asks), which reads the queue up to its first entry, not entry by entry.
    const count: QueueCount = next.commands.some((c) => c.type === 'alert') ? 'exact' : 'any';
    const logged = this.alertsLoggedBySaves(next.commands);
    for (const command of next.commands) await this.execute(command, count, logged);
  }

  /**
   * The alerts whose `log` line a save writes (after its count, in its own local activity: no
   * marker of their own), by save: those that follow a `persist` with nothing between but the
   * search attributes or other such alerts, so the counts they show are the save's. None when the
   * `log` sink is not configured.
   */
  private alertsLoggedBySaves(commands: readonly Command[]): Map<Command, AlertCommand[]> {
    const bySave = new Map<Command, AlertCommand[]>();
    if (!this.settings.alertSinks.includes('log')) return bySave;
    let save: AlertCommand[] | undefined;
    for (const command of commands) {
      if (command.type === 'persist') bySave.set(command, (save = []));
      else if (command.type === 'alert') save?.push(command);
      else if (command.type !== 'upsertSearchAttributes') save = undefined;
    }
    return bySave;
  }

  /** Applies a probe's answer, the sweep's or the one before an escalation level. */
  applyProbe(result: ProbeResult): Promise<void> {
    this.lastProbe = { ...result, at: new Date().toISOString() };
    return this.step({ kind: 'probed', result });
  }

  /**
   * Probes Meta before an escalation level. A probe that fails (the store or Graph down past its
   * retries) is `unknown`: the level is applied as if no probe were configured, never a failed run.
   */
  async probe(): Promise<void> {
    let result: ProbeResult;
    try {
      result = await prober.probeGate({ wabaId: this.wabaId });
    } catch (err) {
      log.warn('gate probe failed; the escalation level goes on without it', {
        wabaId: this.wabaId,
        error: String(err),
      });
      result = { verdict: 'unknown', detail: `probe failed: ${String(err)}` };
    }
    await this.applyProbe(result);
  }

  /** The worker's settings now: a deployment may have changed the levels, ON_ABANDON or the sinks. */
  async refreshSettings(): Promise<void> {
    this.settings = await workerSettings.lifecycleSettings();
  }

  /**
   * Carries out one command; each activity is scheduled when its command comes up, in order.
   * `count`: how a `persist` reports the queue (see `step`); `logged`: the alerts each save logs
   * (see `alertsLoggedBySaves`).
   */
  private async execute(
    command: Command,
    count: QueueCount = 'exact',
    logged: ReadonlyMap<Command, AlertCommand[]> = new Map(),
  ): Promise<void> {
    switch (command.type) {
      case 'cancelDrain':
        await this.cancelDrain();
        return this.step({ kind: 'drainStopped', then: command.then });
      case 'persist': {
        const alerts = logged.get(command) ?? [];
        const log =
          alerts.length > 0 ? { specs: alerts.map((a) => a.alert), failed: this.failed, at: now() } : undefined;
        this.queued = await store.saveWaba(command.waba, count, log);
        this.queuedCount = count;
        return;
      }
      case 'countQueued':
        this.queued = await store.countQueued(this.wabaId);
        this.queuedCount = 'exact';
        return;
      case 'upsertSearchAttributes':
        return; // written once the step's commands are done (`flushAttributes`)
      case 'startDrain':
        if (!command.onlyIfQueued || this.queued > 0) this.startDrain(command.mode);
        // The gate's new state is saved and the queue counted empty: the reconnection's drain is done.
        else if (command.mode === 'reconnected') this.drainOutcome = EMPTY_DRAIN;
        return;
      case 'failQueue':
        this.flushAttributes();
        this.failed = await drainer.failQueue({ wabaId: this.wabaId, reason: command.reason });
        if (command.queueEmptied) [this.queued, this.queuedCount] = [0, 'exact'];
        return;
      case 'alert':
        this.alert(
          command.alert,
          [...logged.values()].some((alerts) => alerts.includes(command)),
        );
        return;
      case 'requeueLate':
        await store.requeueLateFailure(command.failure);
        return;
    }
  }

  /**
   * Writes `WabaState`, `EscalationLevel` and `GateCause` when they differ from the last write: one
   * history event for a step's changes (a reconnection with an empty queue passes `draining` on
   * its way to `connected` within one task and writes only `connected`).
   */
  flushAttributes(): void {
    const w = this.waba;
    if (!w) return;
    const cause = w.closure?.cause ?? 'none';
    const key = `${w.state}/${w.escalationLevel}/${cause}`;
    if (key === this.attributes) return;
    this.attributes = key;
    upsertSearchAttributes([
      { key: WabaStateKey, value: w.state },
      { key: EscalationLevelKey, value: w.escalationLevel },
      { key: GateCauseKey, value: cause },
    ]);
  }

  private startDrain(mode: DrainInput['mode']): void {
    this.drainOutcome = undefined;
    this.cancelling = false;
    const scope = new CancellationScope();
    this.drainScope = scope;
    this.drainDone = scope
      .run(() => drainer.drainQueue({ wabaId: this.wabaId, mode }))
      .then(
        (result: DrainResult): DrainResult | 'interrupted' => result,
        (err: unknown): 'interrupted' => {
          // Asked to stop: `cancelDrain` consumes it. Otherwise nothing is sending any more, and the
          // machine decides what follows (a WABA still draining drains again).
          if (!this.cancelling)
            log.warn('drain ended without being asked to', { wabaId: this.wabaId, error: String(err) });
          return 'interrupted';
        },
      )
      .then((outcome) => {
        if (this.drainScope !== scope) return;
        if (!this.cancelling) {
          this.drainScope = undefined;
          this.drainOutcome = outcome;
        }
      });
  }

  /**
   * Cancels a running drain and waits until the activity has stopped sending. A drain whose worker
   * is gone never acknowledges: its heartbeat timeout ends it (Temporal does not retry an activity
   * once its cancellation is requested), and that ends the wait too. That worker, if it was only
   * frozen, may still finish the one POST it had in flight: a send to an account that cannot send,
   * which Meta refuses.
   */
  private async cancelDrain(): Promise<void> {
    if (!this.drainScope) return;
    this.cancelling = true;
    this.drainScope.cancel();
    await this.drainDone;
    this.drainScope = undefined;
    this.drainOutcome = undefined;
    this.cancelling = false;
  }

  /** Raises an alert on every sink but `log` when its save logged it already (`loggedBySave`). */
  private alert(spec: AlertSpec, loggedBySave: boolean): void {
    const full = composeAlert(
      spec,
      { queued: this.queued, failed: this.failed },
      { wabaId: this.wabaId, state: this.waba!.state, at: now(), runSinks: this.settings.alertSinks },
    );
    const sinks = loggedBySave ? this.settings.alertSinks.filter((s) => s !== 'log') : this.settings.alertSinks;
    // A failing sink never breaks the workflow: it is logged and the run goes on.
    this.alerts.push(...alertInBackground(sinks, full));
  }

  /** Publishes what the run waits for (the `state` query and Temporal UI's details). */
  describe(text: string): void {
    this.nextText = text;
    setCurrentDetails(currentDetails(this.waba, this.queued, text, this.lastProbe, this.queuedCount === 'any'));
  }
}

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
 * This function is the shell: it wires the handlers to a `LifecycleRun`, waits, and carries out
 * the commands of the pure state machine in ./machine.ts, which makes every decision. No activity
 * failure, timeout or settings change fails the run: store activities retry until the store
 * answers, a failed probe is `unknown`, a failed alert is logged, a drain that ends unasked is
 * started again, and the next step is always computable (`nextWakeUp`).
 */
export async function wabaLifecycleWorkflow(
  input: LifecycleInput,
  pending: LifecycleEvent[] = [],
  /** Keys the previous run saw (handed over by continue-as-new), so a late repeat is still a duplicate. */
  seen: string[] = [],
): Promise<LifecycleRunSummary> {
  const { wabaId } = input;
  const run = new LifecycleRun(wabaId, input.settings, pending, seen);

  setHandler(lifecycleEventSignal, (event) => run.receive(event));
  setHandler(gateProbedSignal, (result) => {
    run.sweptProbe = result;
  });
  setHandler(stateQuery, () =>
    view(wabaId, run.waba, run.queued, { next: run.nextText, ...(run.lastProbe ? { lastProbe: run.lastProbe } : {}) }),
  );
  // Operators reach this through update-with-start, so it also works when no run is open (an
  // abandoned WABA): the handler then waits for the WABA document to load before deciding.
  setHandler(
    operatorActionUpdate,
    async (action) => {
      await condition(() => run.waba !== undefined && run.operatorRequest === undefined);
      const refused = refusal(run.waba!, action);
      if (refused)
        throw ApplicationFailure.create({ type: FAILURE_TYPES.actionRefused, message: refused, nonRetryable: true });
      run.operatorRequest = action;
      await condition(() => run.operatorRequest === undefined);
      return { accepted: true as const, state: run.waba!.state };
    },
    {
      validator: (action) => {
        if (!action.reason?.trim()) throw new Error('a reason is required');
        const refused = run.waba && refusal(run.waba, action);
        if (refused) throw new Error(refused);
      },
    },
  );

  await run.open();
  const wake = (): boolean => run.hasInput();
  let stepsInTask = 0;
  for (;;) {
    // A flood of one WABA's events applies many steps, each with its local activities, without
    // waiting: every few steps the task is closed (a 1 ms timer), so their markers are recorded and
    // no single workflow task grows past its timeout (a failed task would run them all again).
    if (stepsInTask >= STEPS_PER_TASK) {
      stepsInTask = 0;
      await sleep(1);
    }
    // Long offboardings stay within history limits: the WABA document carries the state over.
    if (workflowInfo().continueAsNewSuggested && !run.drainRunning && !run.operatorRequest) {
      // An operator update may be waiting for the loop: let it in before handing over, or it
      // (and allHandlersFinished) would wait for a loop that never runs again.
      await Promise.all(run.alerts);
      await condition(() => allHandlersFinished() || run.operatorRequest !== undefined);
      if (run.operatorRequest === undefined) break;
    }
    const event = run.inbox.shift();
    if (event) {
      stepsInTask++;
      await run.step({ kind: 'event', event });
      run.eventsApplied++;
      continue;
    }
    if (run.operatorRequest) {
      await run.step({ kind: 'operator', action: run.operatorRequest });
      run.operatorRequest = undefined;
      continue;
    }
    if (run.drainOutcome !== undefined) {
      const outcome = run.drainOutcome;
      run.drainOutcome = undefined;
      await run.step({ kind: 'drainEnded', outcome });
      continue;
    }
    if (run.sweptProbe !== undefined) {
      const result = run.sweptProbe;
      run.sweptProbe = undefined;
      await run.applyProbe(result);
      continue;
    }
    stepsInTask = 0;
    run.flushAttributes();
    const waba = run.waba!;
    const next = nextWakeUp(waba, run.settings, run.drainRunning, Date.now());
    run.describe(describeWakeUp(next));
    if (next.kind === 'input') {
      await condition(wake);
      continue;
    }
    if (next.kind === 'escalation') {
      const waitMs = next.at - Date.now();
      if (waitMs > 0 && (await condition(wake, waitMs))) continue;
      if (next.probeFirst) {
        // Each level asks Meta first: a number that works again reopens instead of escalating.
        await run.probe();
        if (run.waba!.state !== 'offboarded' || wake()) continue;
      }
      await run.refreshSettings();
      // Under the settings as they are now, the level may have moved (later, or none): look again.
      const due = nextWakeUp(run.waba!, run.settings, run.drainRunning, Date.now());
      if (due.kind === 'escalation' && due.at <= Date.now()) await run.step({ kind: 'escalation', level: due.level });
      continue;
    }
    // connected, reconnect_abandoned or partner_removed: nothing to wait for. An operator action
    // may still be in flight (its handler waits for the main loop), so wake for it too.
    await Promise.all(run.alerts);
    await condition(() => allHandlersFinished() || wake());
    if (wake()) continue;
    return { wabaId, finalState: run.waba!.state, eventsApplied: run.eventsApplied };
  }
  run.flushAttributes();
  await Promise.all(run.alerts);
  await condition(allHandlersFinished);
  return continueAsNew<typeof wabaLifecycleWorkflow>(input, run.inbox, run.recentKeys);
}
