import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Worker } from '@temporalio/worker';
import { ensureBinaries } from '../../tools/infra/binaries';
import { startTemporalDevServer, type TemporalDevServer } from '../../tools/infra/servers';
import { lifecycleEventSignal, SEARCH_ATTRIBUTES, wabaWorkflowId } from '../../src/contracts';
import { freePort } from '../support/delivery';
import { endpoint } from '../support/receiver';
import { eventually, sharedBundle, startStack, uniqueDigits, type Stack } from '../support/stack';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Operator actions at the lifecycle run's hard moments, on a Temporal dev server of the test's own
 * (it is stopped in one test).
 *
 * Continue-as-new with operator updates arriving at that moment (issue #9 item 7). The Temporal dev
 * server of its own suggests continue-as-new after 20 history events, so the lifecycle run of one
 * WABA hands over to a new run every round or so. The window is held open on purpose: the alert
 * sink answers after 2 s, and a run about to continue as new first waits for its alerts. Each
 * round, while the level-1 escalation alert is in flight, a repeated offboarding wakes the run
 * (which then leaves its loop to continue as new) and the operator's update follows it; it must
 * be applied (before the fix its handler waited for a loop that never ran again, and the run hung
 * with it: checked by hand with the fix switched off).
 */
describe('operator actions at hard moments of the lifecycle run (own Temporal server)', () => {
  let temporal: TemporalDevServer;
  let stack: Stack;
  let alerts: Awaited<ReturnType<typeof endpoint>>;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coexist-can-'));

  beforeAll(async () => {
    const bins = await ensureBinaries({ log: () => undefined });
    temporal = await startTemporalDevServer({
      binary: bins.temporal,
      logDir: dir,
      port: await freePort(),
      namespace: 'default',
      searchAttributes: SEARCH_ATTRIBUTES,
      dynamicConfig: { 'limit.historyCount.suggestContinueAsNew': 20 },
    });
    alerts = await endpoint();
    alerts.state.delayMs = 2_000;
    stack = await startStack({
      temporalAddress: `127.0.0.1:${temporal.port}`,
      env: { ALERT_WEBHOOK_URL: alerts.url, ESCALATION_LEVELS: '1s,1h,2h' },
    });
  }, 120_000);
  afterAll(async () => {
    await stack?.stop();
    await temporal?.stop();
    await alerts?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const state = async (wabaId: string) => (await stack.rt.c.wabas.findOne({ _id: wabaId }))?.state;
  const level1Of = (wabaId: string) => (a: { raw: Buffer }) => {
    const body = JSON.parse(a.raw.toString('utf8')) as { wabaId?: string; level?: number };
    return body.wabaId === wabaId && body.level === 1;
  };
  const forceResume = (wabaId: string, reason: string) =>
    stack.ops('POST', `/v1/wabas/${wabaId}/actions`, { action: 'force_resume', reason });

  /**
   * A late repeat of a key the first run saw is still a duplicate several hand-overs later (the
   * keys travel with continue-as-new); a fresh key is applied. Sent while the WABA is offboarded,
   * so the run is open (a connected run ends once its alerts are out); both are offboardings, which
   * an open offboarding joins and logs with their detail.
   */
  async function lateRepeatIsDuplicate(wabaId: string): Promise<void> {
    const firstKey = (await stack.rt.c.accountEvents.find({ wabaId }).sort({ receivedAt: 1 }).limit(1).toArray())[0]!
      ._id;
    const handle = stack.rt.temporal.workflow.getHandle(wabaWorkflowId(wabaId));
    const event = (key: string, detail: string) => ({
      key,
      type: 'ACCOUNT_OFFBOARDED' as const,
      wabaId,
      receivedAt: new Date().toISOString(),
      source: 'webhook' as const,
      detail,
    });
    await handle.signal(lifecycleEventSignal, event(firstKey, 'late repeat'));
    await handle.signal(lifecycleEventSignal, event(`fresh-${wabaId}`, 'fresh key'));
    const details = async () => ((await stack.rt.c.wabas.findOne({ _id: wabaId }))?.events ?? []).map((e) => e.detail);
    await eventually(async () => (await details()).includes('fresh key'), 20_000, 100);
    expect(await details()).not.toContain('late repeat');
  }

  it('continue-as-new: applies every update and keeps one open run through repeated hand-overs', async () => {
    const wabaId = uniqueDigits();
    const t0 = Math.floor(Date.now() / 1000) - 100;
    const answers: number[] = [];
    for (let round = 0; round < 5; round++) {
      expect(await stack.accountUpdate(wabaId, 'ACCOUNT_OFFBOARDED', { time: t0 + 2 * round })).toBe(200);
      await eventually(async () => (await state(wabaId)) === 'offboarded', 20_000, 20);
      // The level-1 alert is out (its answer takes 2 s): the update goes in now.
      await eventually(async () => alerts.got.filter(level1Of(wabaId)).length > round, 20_000, 20);
      // A repeat of the offboarding wakes the run: past the suggestion, it leaves its loop and waits
      // for the alert in flight before continuing as new. The update arrives in that wait.
      expect(await stack.accountUpdate(wabaId, 'ACCOUNT_OFFBOARDED', { time: t0 + 2 * round + 1 })).toBe(200);
      if (round === 4) await lateRepeatIsDuplicate(wabaId);
      await sleep(400);
      answers.push((await forceResume(wabaId, `round ${round}: the client confirmed`)).status);
      // 200 applied, or 202 accepted and applied later: either way the gate must open.
      await eventually(async () => (await state(wabaId)) === 'connected', 20_000, 50);
    }
    expect(answers.every((s) => s === 200 || s === 202)).toBe(true);

    // The run was handed over several times, and exactly one run is open.
    const runs: string[] = [];
    const handedOver: string[] = [];
    for await (const w of stack.rt.temporal.workflow.list({ query: `WorkflowId = '${wabaWorkflowId(wabaId)}'` })) {
      runs.push(w.status.name);
      if (w.status.name === 'CONTINUED_AS_NEW') handedOver.push(w.runId);
    }
    // Each handed-over run replays deterministically against today's code (the patched paths included).
    for (const runId of handedOver) {
      const history = await stack.rt.temporal.workflow.getHandle(wabaWorkflowId(wabaId), runId).fetchHistory();
      await Worker.runReplayHistory({ workflowBundle: await sharedBundle() }, history, runId);
    }
    expect(runs.filter((s) => s === 'CONTINUED_AS_NEW').length).toBeGreaterThanOrEqual(3);
    expect(runs.filter((s) => s === 'RUNNING')).toHaveLength(1);
  }, 240_000);

  it('answers 202 (accepted, not applied) when the run is busy past 10 s, and applies it after', async () => {
    const wabaId = uniqueDigits();
    alerts.state.delayMs = 12_000; // past the sink's 10 s timeout: the alert is retried 2 s later
    try {
      expect(await stack.accountUpdate(wabaId, 'ACCOUNT_OFFBOARDED')).toBe(200);
      await eventually(async () => alerts.got.filter(level1Of(wabaId)).length > 0, 20_000, 20);
      // Woken past the continue-as-new suggestion, the run waits for that alert before handing over.
      expect(await stack.accountUpdate(wabaId, 'ACCOUNT_OFFBOARDED', { time: Math.floor(Date.now() / 1000) + 1 })).toBe(
        200,
      );
      await sleep(400);
      const started = Date.now();
      const r = await forceResume(wabaId, 'the client confirmed');
      expect({ status: r.status, applied: r.json.applied, accepted: r.json.accepted }).toEqual({
        status: 202,
        applied: false,
        accepted: true,
      });
      expect(Date.now() - started).toBeGreaterThanOrEqual(9_500);
      expect(await state(wabaId)).toBe('offboarded');
    } finally {
      alerts.state.delayMs = 2_000;
    }
    await eventually(async () => (await state(wabaId)) === 'connected', 30_000, 100);
  }, 90_000);

  it('answers 503 action_not_accepted when Temporal does not take the action within 10 s, and works again after', async () => {
    const wabaId = uniqueDigits();
    expect(await stack.accountUpdate(wabaId, 'ACCOUNT_OFFBOARDED')).toBe(200);
    await eventually(async () => (await state(wabaId)) === 'offboarded', 20_000, 20);
    process.kill(temporal.pid, 'SIGSTOP');
    let r: Awaited<ReturnType<typeof forceResume>>;
    try {
      r = await forceResume(wabaId, 'the client confirmed');
    } finally {
      process.kill(temporal.pid, 'SIGCONT');
    }
    expect(r.status).toBe(503);
    expect(r.json.error).toMatchObject({
      code: 'action_not_accepted',
      message: expect.stringContaining(`GET /v1/wabas/${wabaId}`),
    });
    // Temporal back: the action (or its retry, refused once the first got through) opens the gate.
    await eventually(
      async () => {
        if ((await state(wabaId)) === 'connected') return true;
        const again = await forceResume(wabaId, 'the client confirmed (retry)');
        return again.status === 200 || again.status === 202;
      },
      60_000,
      1_000,
    );
    await eventually(async () => (await state(wabaId)) === 'connected', 30_000, 100);
  }, 120_000);
});
