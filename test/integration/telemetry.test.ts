/**
 * Telemetry of the production entry points, run as child processes against the real stack: the
 * Temporal SDK's own Prometheus metrics of a worker process (`TEMPORAL_METRICS_BIND`).
 */
import path from 'node:path';
import { createServer } from 'node:net';
import { spawnWatched, type WatchedChild } from '../support/child';
import { eventually, startStack, uniqueDigits, type Stack } from '../support/stack';

const ROOT = path.join(__dirname, '../..');

/** A port that was free a moment ago (the SDK's exporter binds it itself). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return port;
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The samples of a Prometheus text exposition (label values without escapes, as the SDK writes them). */
function parseSamples(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1]!, l[2]!]));
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** The sum of the samples named `name` whose labels include `labels`. */
function total(samples: Sample[], name: string, labels: Record<string, string>): number {
  return samples
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((sum, s) => sum + s.value, 0);
}

describe('the Temporal SDK metrics of a worker process (TEMPORAL_METRICS_BIND)', () => {
  let stack: Stack;
  let worker: WatchedChild | undefined;
  let metricsUrl: string;
  beforeAll(async () => {
    stack = await startStack({ noWorker: true });
    const port = await freePort();
    metricsUrl = `http://127.0.0.1:${port}/metrics`;
    worker = spawnWatched(process.execPath, ['--import', 'tsx', 'src/worker-main.ts'], {
      cwd: ROOT,
      env: { ...process.env, ...stack.env, LOG_LEVEL: 'info', TEMPORAL_METRICS_BIND: `127.0.0.1:${port}` },
    });
    await worker.ready(/"msg":"worker running"/, 90_000);
  }, 120_000);
  afterAll(async () => {
    worker?.child.kill('SIGKILL');
    await worker?.exited;
    await stack?.stop();
  });

  it('serves real SDK metrics that count the workflow and activity tasks of a send and an offboarding', async () => {
    const wabaId = uniqueDigits();
    const phone = uniqueDigits('2');
    await stack.register(phone, wabaId, { coexistence: true });
    const sent = await stack.send({ phoneNumberId: phone, to: '15550003333', type: 'text', text: { body: 'hi' } });
    expect(sent.status).toBe(202);
    await eventually(async () => (await stack.message(sent.json.id as string))?.status === 'sent', 60_000);
    expect(await stack.accountUpdate(wabaId, 'ACCOUNT_OFFBOARDED')).toBe(200);
    await eventually(async () => (await stack.rt.c.wabas.findOne({ _id: wabaId }))?.state === 'offboarded', 60_000);
    // The SDK records a task's metrics when the task completes, a moment after its effects.
    const q = { task_queue: stack.env.TEMPORAL_TASK_QUEUE! };
    const send = { ...q, workflow_type: 'sendMessageWorkflow' };
    const lifecycle = { ...q, workflow_type: 'wabaLifecycleWorkflow' };
    let text = '';
    const samples = await eventually(async () => {
      text = await (await fetch(metricsUrl)).text();
      const s = parseSamples(text);
      const done =
        total(s, 'temporal_workflow_completed', send) > 0 &&
        total(s, 'temporal_workflow_task_execution_latency_count', lifecycle) > 0;
      return done && s;
    }, 30_000);
    expect(total(samples, 'temporal_worker_start', q)).toBe(1);
    // The send: one workflow completed, its admit activity ran once (durations in seconds).
    expect(total(samples, 'temporal_workflow_completed', send)).toBe(1);
    expect(total(samples, 'temporal_activity_execution_latency_count', { ...send, activity_type: 'admit' })).toBe(1);
    const admitSeconds = total(samples, 'temporal_activity_execution_latency_sum', { ...send, activity_type: 'admit' });
    expect(admitSeconds).toBeGreaterThan(0);
    expect(admitSeconds).toBeLessThan(30);
    expect(total(samples, 'temporal_workflow_task_execution_latency_count', send)).toBeGreaterThanOrEqual(1);
    // The offboarding: the lifecycle workflow's local activities loaded and saved the WABA.
    expect(
      total(samples, 'temporal_local_activity_total', { ...lifecycle, activity_type: 'loadWaba' }),
    ).toBeGreaterThanOrEqual(1);
    expect(
      total(samples, 'temporal_local_activity_total', { ...lifecycle, activity_type: 'saveWaba' }),
    ).toBeGreaterThanOrEqual(1);
    expect(text).toMatch(/^# TYPE temporal_activity_execution_latency histogram$/m);
    expect(text).toMatch(/^# TYPE temporal_workflow_completed counter$/m);
  });
});
