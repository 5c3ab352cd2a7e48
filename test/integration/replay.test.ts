import fs from 'node:fs';
import path from 'node:path';
import { Worker } from '@temporalio/worker';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';
import { statusPayload } from '../../tools/meta-sim/payloads';
import { credentialsWorkflowId, gateProbeSweepWorkflowId, sendWorkflowId, wabaWorkflowId } from '../../src/contracts';
import { eventually, sharedBundle, startStack, uniqueDigits, type Stack } from '../support/stack';

/**
 * Determinism guard. The 1.0 baseline histories (and, from the first release on, those of every
 * later version) live in test/fixtures/histories/ and must still replay against today's code;
 * histories of fresh runs must replay too. A change to workflow code that reorders commands fails here, in CI.
 * `RECORD_HISTORIES=1` rewrites the fixtures from the fresh runs (do it only on purpose);
 * `RECORD_HISTORIES=<name>,<name>` writes only those (a new behaviour's history beside the old ones).
 */
const FIXTURES = path.join(__dirname, '../fixtures/histories');
const recording = (name: string): boolean =>
  process.env.RECORD_HISTORIES === '1' || (process.env.RECORD_HISTORIES ?? '').split(',').includes(name);

describe('workflow histories replay deterministically', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ env: { ESCALATION_LEVELS: '1s,60m,24h' } });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('replays the committed histories of earlier versions', async () => {
    const files = fs.existsSync(FIXTURES) ? fs.readdirSync(FIXTURES).filter((f) => f.endsWith('.json')) : [];
    expect(files.length).toBeGreaterThan(0);
    const bundle = await sharedBundle();
    for (const file of files) {
      // The Temporal JSON format (as `temporal workflow show --output json` prints it).
      const history: unknown = JSON.parse(fs.readFileSync(path.join(FIXTURES, file), 'utf8'));
      await Worker.runReplayHistory({ workflowBundle: bundle }, history, file.replace(/\.json$/, ''));
    }
  });

  it('replays fresh runs: offboard, escalate, queue, reconnect and drain; partner removal; a send', async () => {
    const wabaId = uniqueDigits();
    const phone = uniqueDigits('5');
    await stack.register(phone, wabaId, { coexistence: true });
    await stack.accountUpdate(wabaId, 'ACCOUNT_OFFBOARDED');
    await eventually(async () => (await stack.rt.c.wabas.findOne({ _id: wabaId }))?.escalationLevel === 1);
    const queued = await stack.send({
      phoneNumberId: phone,
      to: '15550009999',
      type: 'text',
      text: { body: 'replay me' },
    });
    await eventually(
      async () => (await stack.rt.c.messages.findOne({ _id: queued.json.id as string }))?.status === 'queued',
    );
    await stack.accountUpdate(wabaId, 'ACCOUNT_RECONNECTED');
    const lifecycle = stack.rt.temporal.workflow.getHandle(wabaWorkflowId(wabaId));
    await lifecycle.result();
    const send = stack.rt.temporal.workflow.getHandle(sendWorkflowId(queued.json.id as string));
    await send.result();

    const removed = uniqueDigits();
    await stack.accountUpdate(removed, 'ACCOUNT_OFFBOARDED');
    await eventually(async () => (await stack.rt.c.wabas.findOne({ _id: removed }))?.state === 'offboarded');
    await stack.accountUpdate(removed, 'PARTNER_REMOVED', {
      disconnectionInfo: { reason: 'ACCOUNT_DISCONNECTED', initiated_by: 'USER' },
    });
    const removal = stack.rt.temporal.workflow.getHandle(wabaWorkflowId(removed));
    await removal.result();

    const bundle = await sharedBundle();
    const histories = {
      'lifecycle-offboard-escalate-reconnect': await lifecycle.fetchHistory(),
      'lifecycle-partner-removed': await removal.fetchHistory(),
      'send-queued-then-drained': await send.fetchHistory(),
    };
    for (const [name, history] of Object.entries(histories)) {
      await Worker.runReplayHistory({ workflowBundle: bundle }, history, name);
      if (recording(name)) {
        fs.mkdirSync(FIXTURES, { recursive: true });
        fs.writeFileSync(path.join(FIXTURES, `${name}.json`), historyToJSON(history));
      }
    }
  });
});

describe('histories of gate probes and the way back from partner removal replay deterministically', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ env: { ESCALATION_LEVELS: '10m,60m,24h', GATE_PROBE_INTERVAL: '1s' } });
    stack.sim.setWebhookTarget({ targetUrl: stack.webhookUrl, appSecret: stack.appSecret });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('replays fresh runs: a lost reconnection reopened by the probe; removal then PARTNER_ADDED; a late failure re-queued; a refused token paused and resumed', async () => {
    const wabaId = uniqueDigits();
    const phone = uniqueDigits('5');
    await stack.register(phone, wabaId, { coexistence: true });
    stack.sim.setNumber(phone, { wabaId });
    await stack.sim.lifecycle(phone, 'ACCOUNT_OFFBOARDED');
    await eventually(async () => (await stack.rt.c.wabas.findOne({ _id: wabaId }))?.state === 'offboarded');
    const queued = await stack.send({ phoneNumberId: phone, to: '15550009998', type: 'text', text: { body: 'probe' } });
    await eventually(
      async () => (await stack.rt.c.messages.findOne({ _id: queued.json.id as string }))?.status === 'queued',
    );
    await stack.sim.lifecycle(phone, 'ACCOUNT_RECONNECTED', { dropWebhook: true });
    const probed = stack.rt.temporal.workflow.getHandle(wabaWorkflowId(wabaId));
    await probed.result();

    const removed = uniqueDigits();
    await stack.accountUpdate(removed, 'PARTNER_REMOVED', {
      disconnectionInfo: { reason: 'ACCOUNT_DISCONNECTED', initiated_by: 'USER' },
    });
    await eventually(async () => (await stack.rt.c.wabas.findOne({ _id: removed }))?.state === 'partner_removed');
    await stack.rt.temporal.workflow.getHandle(wabaWorkflowId(removed)).result();
    await stack.accountUpdate(removed, 'PARTNER_ADDED');
    await eventually(async () => (await stack.rt.c.wabas.findOne({ _id: removed }))?.state === 'connected');
    const back = stack.rt.temporal.workflow.getHandle(wabaWorkflowId(removed));
    await back.result();

    // A message Meta failed after accepting it: queued again, drained at the reconnection.
    const late = uniqueDigits();
    const latePhone = uniqueDigits('5');
    await stack.register(latePhone, late, { coexistence: true });
    const sent = await stack.send({
      phoneNumberId: latePhone,
      to: '15550009997',
      type: 'text',
      text: { body: 'late' },
    });
    const sentId = sent.json.id as string;
    await eventually(async () => (await stack.message(sentId))?.status === 'sent');
    const wamid = (await stack.message(sentId))!.wamid!;
    const failed = statusPayload(late, latePhone, [
      {
        id: wamid,
        status: 'failed',
        recipientId: '15550009997',
        errors: [{ code: 131031 }],
        bizOpaqueCallbackData: sentId,
      },
    ]);
    expect(await stack.webhook(failed)).toBe(200);
    await eventually(async () => (await stack.message(sentId))?.status === 'queued');
    await stack.accountUpdate(late, 'ACCOUNT_RECONNECTED');
    const requeued = stack.rt.temporal.workflow.getHandle(wabaWorkflowId(late));
    await requeued.result();
    expect((await stack.message(sentId))?.history?.map((h) => h.status)).toEqual(['sent', 'failed', 'queued', 'sent']);

    // A refused token: its credentials workflow alerts, probes and resumes.
    const tokenWaba = uniqueDigits();
    const tokenPhone = uniqueDigits('5');
    await stack.register(tokenPhone, tokenWaba, { coexistence: true });
    stack.sim.setNumber(tokenPhone, { wabaId: tokenWaba, token: 'a-token-we-do-not-have' });
    const waiting = await stack.send({
      phoneNumberId: tokenPhone,
      to: '15550009996',
      type: 'text',
      text: { body: 'token' },
    });
    await eventually(async () => (await stack.message(waiting.json.id as string))?.status === 'queued');
    await new Promise((r) => setTimeout(r, 1_500)); // at least one refused probe
    stack.sim.setNumber(tokenPhone, { token: stack.config.graph.token });
    const credentials = stack.rt.temporal.workflow.getHandle(
      credentialsWorkflowId(stack.config.temporal.taskQueue, 'GRAPH_API_TOKEN'),
    );
    await credentials.result();
    await eventually(async () => (await stack.message(waiting.json.id as string))?.status === 'sent');

    const bundle = await sharedBundle();
    const histories = {
      // A lost reconnection reopened by the gate probe sweep's signal.
      'lifecycle-probe-sweep-reopen': await probed.fetchHistory(),
      'gate-probe-sweep': await stack.rt.temporal.workflow
        .getHandle(gateProbeSweepWorkflowId(stack.config.temporal.taskQueue))
        .fetchHistory(),
      'lifecycle-partner-added': await back.fetchHistory(),
      'lifecycle-late-failure-requeue': await requeued.fetchHistory(),
      'credentials-pause-resume': await credentials.fetchHistory(),
    };
    for (const [name, history] of Object.entries(histories)) {
      await Worker.runReplayHistory({ workflowBundle: bundle }, history, name);
      if (recording(name)) {
        fs.mkdirSync(FIXTURES, { recursive: true });
        fs.writeFileSync(path.join(FIXTURES, `${name}.json`), historyToJSON(history));
      }
    }
  });
});
