import { TestWorkflowEnvironment } from '@temporalio/testing';
import { DefaultLogger, Runtime, Worker } from '@temporalio/worker';
import { ApplicationFailure, Context } from '@temporalio/activity';
import { temporalBinary } from '../../tools/infra/binaries';
import { bundleWorkflows } from '../../src/worker';
import type { WabaSnapshot } from '../../src/lifecycle/wabas.store';
import type { Activities } from '../../src/activities';
import type { AlertInput, DrainInput } from '../../src/contracts';
import { wabaLifecycleWorkflow } from '../../src/lifecycle/lifecycle.workflow';
import type { AlertsToLog } from '../../src/lifecycle/lifecycle.activities';
import { composeAlert } from '../../src/lifecycle/machine';
import {
  EscalationLevelKey,
  GateCauseKey,
  WabaIdKey,
  WabaStateKey,
  lifecycleEventSignal,
  wabaWorkflowId,
  type LifecycleEvent,
  type LifecycleSettings,
} from '../../src/contracts';

/**
 * The lifecycle workflow alone, on Temporal's test environment (the cached CLI binary, nothing
 * downloaded), with in-memory activities: the order of what it asks the outside world to do.
 */
describe('wabaLifecycleWorkflow (test environment, in-memory activities)', () => {
  let env: TestWorkflowEnvironment;
  let workflowBundle: { code: string };
  beforeAll(async () => {
    Runtime.install({ logger: new DefaultLogger('WARN') });
    env = await TestWorkflowEnvironment.createLocal({
      server: {
        executable: { type: 'existing-path', path: temporalBinary() },
        searchAttributes: [WabaIdKey, WabaStateKey, EscalationLevelKey, GateCauseKey],
      },
    });
    workflowBundle = await bundleWorkflows();
  }, 60_000);
  afterAll(async () => {
    await env?.teardown();
  });

  /**
   * Fake activities recording calls; the queue holds `queued` entries (0: a reconnection opens the
   * gate without a drain). `drainQueue` runs until cancelled unless told to finish; with
   * `deadOnCancel` it stops heartbeating and never answers once cancelled (its worker is gone).
   */
  function fakes(opts: { drainFinishes?: boolean; queued?: number; deadOnCancel?: boolean } = {}) {
    const calls: string[] = [];
    const alerts: AlertInput[] = [];
    /** How each save was asked to report the queue (`exact` or `any`), by the state it saved. */
    const counts: string[] = [];
    /** Who delivered each alert: `save:<kind>` (its save wrote the log line) or `<sink>:<kind>`. */
    const loggedBy: string[] = [];
    let doc: WabaSnapshot | undefined;
    let queued = opts.queued ?? 0;
    let opened: string | undefined;
    const activities: Partial<Activities> = {
      async openWaba(wabaId: string) {
        opened = wabaId;
        const waba = doc ?? {
          wabaId,
          state: 'connected' as const,
          since: new Date().toISOString(),
          escalationLevel: 0,
          events: [],
          updatedAt: '',
        };
        return { settings: await activities.lifecycleSettings!(), waba, queued };
      },
      async saveWaba(snapshot: WabaSnapshot, count?: 'exact' | 'any', log?: AlertsToLog) {
        doc = snapshot;
        calls.push(`save:${snapshot.state}:${snapshot.escalationLevel}`);
        counts.push(`${snapshot.state}:${count}`);
        const reported = count === 'any' ? Math.min(queued, 1) : queued;
        for (const spec of log?.specs ?? []) {
          loggedBy.push(`save:${spec.kind}`);
          const raised = { wabaId: snapshot.wabaId, state: snapshot.state, at: log!.at };
          alerts.push(composeAlert(spec, { queued: reported, failed: log!.failed }, raised));
        }
        return reported;
      },
      async countQueued() {
        return queued;
      },
      async drainQueue(input: DrainInput) {
        calls.push(`drain:${input.mode}`);
        if (opts.drainFinishes) {
          const sent = queued;
          queued = 0;
          return { sent, failed: 0, expired: 0, alreadySettled: 0 };
        }
        const ctx = Context.current();
        for (;;) {
          ctx.heartbeat();
          try {
            await Promise.race([ctx.cancelled, new Promise((r) => setTimeout(r, 50))]);
          } catch (err) {
            calls.push('drain:cancelled');
            // Never heartbeats or answers again while the server gives up on it (heartbeat timeout 20 s),
            // then goes away so the test's worker can shut down.
            if (opts.deadOnCancel) await new Promise((r) => setTimeout(r, 25_000));
            throw err;
          }
        }
      },
      async failQueue(input: { reason: string }) {
        calls.push(`failQueue:${input.reason}`);
        return 0;
      },
      async deliverAlert(sink, alert: AlertInput) {
        loggedBy.push(`${sink}:${alert.kind}`);
        alerts.push(alert);
      },
    };
    return { calls, alerts, counts, loggedBy, activities, wabaId: () => opened! };
  }

  /** Waits (up to 30 s) until the fake activities recorded `call`: a fixed delay is too short on a busy machine. */
  async function untilCalled(calls: string[], call: string): Promise<void> {
    for (let waited = 0; !calls.includes(call) && waited < 30_000; waited += 20)
      await new Promise((r) => setTimeout(r, 20));
  }

  /** Runs one WABA's workflow; `settings` go in its input and, unless `workerConfig` says otherwise (read at each use), are the worker's too. */
  async function run(
    activities: Partial<Activities>,
    settings: LifecycleSettings,
    body: (
      send: (e: Omit<LifecycleEvent, 'key' | 'receivedAt' | 'source' | 'wabaId'>) => Promise<void>,
    ) => Promise<void>,
    workerConfig: LifecycleSettings | (() => LifecycleSettings) = settings,
  ) {
    const workerSettings = typeof workerConfig === 'function' ? workerConfig : () => workerConfig;
    activities.lifecycleSettings = async () => workerSettings();
    const wabaId = String(Math.floor(Math.random() * 1e15));
    const taskQueue = `unit-${wabaId}`;
    const worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue,
      workflowBundle,
      activities,
      maxHeartbeatThrottleInterval: '1 second', // as the service's worker (src/worker.ts)
    });
    let n = 0;
    return worker.runUntil(async () => {
      const send = async (e: Omit<LifecycleEvent, 'key' | 'receivedAt' | 'source' | 'wabaId'>) => {
        await env.client.workflow.signalWithStart(wabaLifecycleWorkflow, {
          workflowId: wabaWorkflowId(wabaId),
          taskQueue,
          args: [{ wabaId, settings }],
          signal: lifecycleEventSignal,
          signalArgs: [{ ...e, wabaId, key: `k${n++}`, receivedAt: new Date().toISOString(), source: 'webhook' }],
        });
      };
      await body(send);
      return env.client.workflow.getHandle(wabaWorkflowId(wabaId)).result();
    });
  }

  const settings: LifecycleSettings = {
    escalation: [
      { level: 1, afterMs: 300, severity: 'warning' },
      { level: 2, afterMs: 600, severity: 'page' },
      { level: 3, afterMs: 900, severity: 'critical' },
    ],
    onAbandon: 'fail',
    alertSinks: ['log'],
  };

  it('raises each escalation level in turn, then abandons and fails the queue', async () => {
    const f = fakes();
    const summary = await run(f.activities, settings, (send) => send({ type: 'ACCOUNT_OFFBOARDED' }));
    expect(summary.finalState).toBe('reconnect_abandoned');
    expect(f.calls).toEqual([
      'save:offboarded:0',
      'save:offboarded:1',
      'save:offboarded:2',
      'save:reconnect_abandoned:3',
      'failQueue:reconnect_timeout',
    ]);
    // Alerts are delivered concurrently (fire and forget): which levels, not their arrival order.
    expect(f.alerts.map((a) => [a.level, a.severity]).sort((x, y) => Number(x[0]) - Number(y[0]))).toEqual([
      [1, 'warning'],
      [2, 'page'],
      [3, 'critical'],
    ]);
  });

  it("follows the worker's settings, not the ones frozen in the run's input by whoever started it", async () => {
    const f = fakes();
    // Started by a process configured with hour-long levels; the worker (a newer deployment) keeps the queue.
    const starter = {
      ...settings,
      escalation: settings.escalation.map((l) => ({ ...l, afterMs: l.afterMs * 12_000 })),
    };
    const summary = await run(f.activities, starter, (send) => send({ type: 'ACCOUNT_OFFBOARDED' }), {
      ...settings,
      onAbandon: 'keep',
    });
    expect(summary.finalState).toBe('reconnect_abandoned');
    expect(f.calls).not.toContain('failQueue:reconnect_timeout');
  });

  it('keeps the queue at the final level when configured to', async () => {
    const f = fakes();
    await run(f.activities, { ...settings, onAbandon: 'keep' }, (send) => send({ type: 'ACCOUNT_OFFBOARDED' }));
    expect(f.calls).not.toContain('failQueue:reconnect_timeout');
  });

  /**
   * Offboards, reconnects, and once the drain runs (a fixed delay is too short on a busy machine)
   * removes the partner for good: the drain must stop before the queue is failed.
   */
  async function removedDuringDrain(f: ReturnType<typeof fakes>): Promise<void> {
    const long = { ...settings, escalation: [{ level: 1, afterMs: 3_600_000, severity: 'critical' as const }] };
    const summary = await run(f.activities, long, async (send) => {
      await send({ type: 'ACCOUNT_OFFBOARDED', metaTime: 100 });
      await send({ type: 'ACCOUNT_RECONNECTED', metaTime: 200 });
      await untilCalled(f.calls, 'drain:reconnected');
      await send({ type: 'PARTNER_REMOVED', metaTime: 300, disconnectionInfo: { reason: 'ACCOUNT_DISCONNECTED' } });
    });
    expect(summary.finalState).toBe('partner_removed');
    const order = ['drain:reconnected', 'drain:cancelled', 'save:partner_removed:0', 'failQueue:partner_removed'];
    expect(f.calls.filter((c) => order.includes(c))).toEqual(order);
  }

  it('on PARTNER_REMOVED during a drain, stops the drain before failing the queue', async () => {
    await removedDuringDrain(fakes({ queued: 3 }));
  });

  it("applies a reconnection older than the open offboarding (Meta's example pair): one drain, connected", async () => {
    const f = fakes({ drainFinishes: true, queued: 2 });
    const summary = await run(f.activities, settings, async (send) => {
      await send({ type: 'ACCOUNT_OFFBOARDED', metaTime: 500 });
      await send({ type: 'ACCOUNT_RECONNECTED', metaTime: 400 });
      await new Promise((r) => setTimeout(r, 100));
      await send({ type: 'ACCOUNT_RECONNECTED', metaTime: 600 });
    });
    expect(summary.finalState).toBe('connected');
    expect(f.calls.filter((c) => c.startsWith('drain'))).toEqual(['drain:reconnected']);
  });

  it('counts the queue only at a save whose step raises an alert; the others ask whether anything waits', async () => {
    const f = fakes({ drainFinishes: true, queued: 4 });
    const long = { ...settings, escalation: [{ level: 1, afterMs: 3_600_000, severity: 'critical' as const }] };
    const summary = await run(f.activities, long, async (send) => {
      await send({ type: 'ACCOUNT_OFFBOARDED', metaTime: 100 });
      await send({ type: 'ACCOUNT_RECONNECTED', metaTime: 200 });
    });
    expect(summary.finalState).toBe('connected');
    // Offboarded and draining: no alert (the drain starts on "anything?"); connected: the
    // reconnection's alert carries the count.
    expect(f.counts).toEqual(['offboarded:any', 'draining:any', 'connected:exact']);
    expect(f.calls.filter((c) => c.startsWith('drain'))).toEqual(['drain:reconnected']);
    expect(f.alerts.map((a) => [a.kind, a.queued])).toEqual([['reconnected', 0]]);
  });

  it("writes the log line of an alert that follows a save in that save's local activity, else the log sink's", async () => {
    const f = fakes();
    await run(f.activities, settings, (send) => send({ type: 'ACCOUNT_OFFBOARDED' }));
    // Levels 1 and 2 come with their save; the last level counts the queue after failing it first,
    // so its line is the log sink's own.
    expect(f.loggedBy).toEqual(['save:escalated', 'save:escalated', 'log:abandoned']);
    const history = await env.client.workflow.getHandle(wabaWorkflowId(f.wabaId())).fetchHistory();
    const markers = (history.events ?? []).filter((e) => e.markerRecordedEventAttributes).length;
    // The open, the save of each step (offboarded, levels 1 to 3), the settings before each level,
    // the last level's count and its log line: 10 (12 with a marker per level's line).
    expect(markers).toBe(10);
  });

  it("a flood of one WABA's events: every one applied, the workflow task closed every 8 steps", async () => {
    const f = fakes();
    const wabaId = String(Math.floor(Math.random() * 1e15));
    const taskQueue = `unit-${wabaId}`;
    const flood = 20;
    // Recorded before any worker polls, so the run's first task finds all of them in its inbox.
    for (let i = 0; i < flood; i++) {
      await env.client.workflow.signalWithStart(wabaLifecycleWorkflow, {
        workflowId: wabaWorkflowId(wabaId),
        taskQueue,
        args: [{ wabaId, settings }],
        signal: lifecycleEventSignal,
        signalArgs: [
          {
            type: i % 2 === 0 ? 'ACCOUNT_OFFBOARDED' : 'ACCOUNT_RECONNECTED',
            metaTime: 1_700_000_000 + i,
            wabaId,
            key: `flood${i}`,
            receivedAt: new Date().toISOString(),
            source: 'webhook',
          },
        ],
      });
    }
    f.activities.lifecycleSettings = async () => settings;
    const worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue,
      workflowBundle,
      activities: f.activities,
    });
    const handle = env.client.workflow.getHandle(wabaWorkflowId(wabaId));
    const summary = await worker.runUntil(handle.result());
    expect(summary).toMatchObject({ finalState: 'connected', eventsApplied: flood });
    const history = await handle.fetchHistory();
    const taskBreaks = (history.events ?? []).filter(
      (e) => e.timerStartedEventAttributes && Number(e.timerStartedEventAttributes.startToFireTimeout?.nanos) === 1e6,
    );
    // 20 steps without waiting: a 1 ms timer after the 8th and the 16th, so no task holds more than 8.
    expect(taskBreaks).toHaveLength(2);
  }, 60_000);

  describe('no activity failure, timeout or settings change fails or freezes a run', () => {
    it('a drain whose worker died when it was asked to stop: the removal is applied once its heartbeat times out', async () => {
      // Before: the heartbeat timeout after the cancel failed the run, and the removal was never applied.
      await removedDuringDrain(fakes({ queued: 3, deadOnCancel: true }));
    }, 90_000);

    it('ESCALATION_LEVELS shortened below the next level under an open run: the run abandons at the new last level', async () => {
      const f = fakes();
      // Level 2 far enough after level 1 that the test changes the settings in between, however busy the machine.
      const three: LifecycleSettings = {
        ...settings,
        escalation: [
          { level: 1, afterMs: 300, severity: 'warning' },
          { level: 2, afterMs: 4_000, severity: 'page' },
          { level: 3, afterMs: 5_000, severity: 'critical' },
        ],
      };
      let levels = three;
      const summary = await run(
        f.activities,
        three,
        async (send) => {
          await send({ type: 'ACCOUNT_OFFBOARDED' });
          // Level 1 (300 ms) applied under three levels; then a deployment keeps only the first.
          await untilCalled(f.calls, 'save:offboarded:1');
          levels = { ...three, escalation: three.escalation.slice(0, 1) };
        },
        () => levels,
      );
      // Before: "no escalation level 2" failed the workflow task for as long as nothing else happened.
      expect(summary.finalState).toBe('reconnect_abandoned');
      expect(f.calls).toEqual([
        'save:offboarded:0',
        'save:offboarded:1',
        'save:reconnect_abandoned:1',
        'failQueue:reconnect_timeout',
      ]);
    });

    it('a probe that fails before a level (the store or Graph down): the level is applied, the run goes on', async () => {
      const f = fakes();
      f.activities.probeGate = async () => {
        f.calls.push('probe');
        throw ApplicationFailure.nonRetryable('store unreachable');
      };
      const probing = { ...settings, probeIntervalMs: 60_000, probeMaxIntervalMs: 3_600_000 };
      const summary = await run(f.activities, probing, (send) => send({ type: 'ACCOUNT_OFFBOARDED' }));
      // Before: the failed probe activity failed the run at its first level.
      expect(summary.finalState).toBe('reconnect_abandoned');
      expect(f.calls.filter((c) => c === 'probe')).toHaveLength(3);
      expect(f.calls.filter((c) => c.startsWith('save:'))).toEqual([
        'save:offboarded:0',
        'save:offboarded:1',
        'save:offboarded:2',
        'save:reconnect_abandoned:3',
      ]);
    });
  });
});
