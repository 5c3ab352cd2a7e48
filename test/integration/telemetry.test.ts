/**
 * Telemetry of the production entry points, run as child processes against the real stack: the
 * Prometheus metrics of a worker process (the SDK's own on `TEMPORAL_METRICS_BIND`, the service's
 * and its process metrics on `WORKER_METRICS_PORT`), and
 * OpenTelemetry tracing of a server and a worker process (`OTEL_EXPORTER_OTLP_ENDPOINT`) into a
 * small OTLP/HTTP JSON receiver.
 */
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { createServer as createHttpServer, type Server } from 'node:http';
import { spawnWatched, type WatchedChild } from '../support/child';
import { dashboardQueries, seriesOf } from '../support/dashboard';
import { Worker } from '@temporalio/worker';
import { bundleWorkflows } from '../../src/worker';
import { sendWorkflowId } from '../../src/contracts';
import { eventually, sharedBundle, startStack, uniqueDigits, type Stack } from '../support/stack';

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

describe('the metrics of a worker process (TEMPORAL_METRICS_BIND, WORKER_METRICS_PORT)', () => {
  let stack: Stack;
  let worker: WatchedChild | undefined;
  let metricsUrl: string;
  let workerMetricsUrl: string;
  beforeAll(async () => {
    stack = await startStack({ noWorker: true });
    const [port, workerPort] = [await freePort(), await freePort()];
    metricsUrl = `http://127.0.0.1:${port}/metrics`;
    workerMetricsUrl = `http://127.0.0.1:${workerPort}/metrics`;
    worker = spawnWatched(process.execPath, ['--import', 'tsx', 'src/worker-main.ts'], {
      cwd: ROOT,
      env: {
        ...process.env,
        ...stack.env,
        LOG_LEVEL: 'info',
        TEMPORAL_METRICS_BIND: `127.0.0.1:${port}`,
        WORKER_METRICS_PORT: String(workerPort),
      },
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
    // The offboarding: the lifecycle workflow's local activities opened (loaded) and saved the WABA.
    expect(
      total(samples, 'temporal_local_activity_total', { ...lifecycle, activity_type: 'openWaba' }),
    ).toBeGreaterThanOrEqual(1);
    expect(
      total(samples, 'temporal_local_activity_total', { ...lifecycle, activity_type: 'saveWaba' }),
    ).toBeGreaterThanOrEqual(1);
    expect(text).toMatch(/^# TYPE temporal_activity_execution_latency histogram$/m);
    expect(text).toMatch(/^# TYPE temporal_workflow_completed counter$/m);
    // The dashboard's Temporal panels name series this worker really exposes.
    const scraped = new Set(samples.map((s) => s.name));
    const inDashboard = [
      ...new Set(dashboardQueries().flatMap((q) => seriesOf(q.expr).filter((n) => n.startsWith('temporal_')))),
    ];
    expect(inDashboard.length).toBeGreaterThanOrEqual(5);
    expect(inDashboard.filter((n) => !scraped.has(n))).toEqual([]);
  });

  it('serves its own metrics with the process metrics (CPU, memory, heap, event-loop lag, GC) on WORKER_METRICS_PORT', async () => {
    const res = await fetch(workerMetricsUrl);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toMatch(/^# TYPE coexist_relay_sends_total counter$/m);
    const samples = parseSamples(text);
    for (const name of [
      'process_cpu_user_seconds_total',
      'process_resident_memory_bytes',
      'nodejs_heap_size_used_bytes',
      'nodejs_eventloop_lag_p99_seconds',
    ])
      expect(total(samples, name, {})).toBeGreaterThan(0);
    // GC is observed from createRelayMetrics on: creating the worker (its workflow bundle) already collects.
    await eventually(
      async () =>
        total(parseSamples(await (await fetch(workerMetricsUrl)).text()), 'nodejs_gc_duration_seconds_count', {}) > 0,
      30_000,
    );
  });
});

/** A span as an OTLP/HTTP JSON export carries it, flattened with its resource's attributes. */
interface ExportedSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  status?: { code?: number; message?: string };
  attributes: Record<string, string | number | boolean>;
  resource: Record<string, string | number | boolean>;
}

interface OtlpValue {
  stringValue?: string;
  intValue?: string | number;
  doubleValue?: number;
  boolValue?: boolean;
}
type OtlpAttributes = { key: string; value: OtlpValue }[] | undefined;

const attributes = (list: OtlpAttributes): Record<string, string | number | boolean> =>
  Object.fromEntries(
    (list ?? []).map(({ key, value }) => [
      key,
      value.stringValue ??
        (value.intValue !== undefined ? Number(value.intValue) : (value.doubleValue ?? value.boolValue!)),
    ]),
  );

/** Collects what OTLP/HTTP exporters POST to `/v1/traces` (JSON only; anything else is answered 415). */
async function otlpReceiver(): Promise<{ url: string; spans: ExportedSpan[]; posts: string[]; stop(): Promise<void> }> {
  const spans: ExportedSpan[] = [];
  const posts: string[] = [];
  const server: Server = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      posts.push(`${req.method} ${req.url} ${req.headers['content-type']}`);
      if (req.method !== 'POST' || req.url !== '/v1/traces' || !/json/.test(req.headers['content-type'] ?? '')) {
        return void res.writeHead(415).end();
      }
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
        resourceSpans?: {
          resource?: { attributes?: OtlpAttributes };
          scopeSpans?: {
            spans?: (Omit<ExportedSpan, 'attributes' | 'resource'> & { attributes?: OtlpAttributes })[];
          }[];
        }[];
      };
      for (const rs of body.resourceSpans ?? []) {
        const resource = attributes(rs.resource?.attributes);
        for (const ss of rs.scopeSpans ?? [])
          for (const span of ss.spans ?? []) spans.push({ ...span, attributes: attributes(span.attributes), resource });
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    spans,
    posts,
    stop: () => new Promise<void>((r) => server.close(() => r())),
  };
}

const SPAN_KIND = { INTERNAL: 1, SERVER: 2, CLIENT: 3 } as const;
const STATUS_ERROR = 2;

describe('OpenTelemetry tracing of the server and worker processes (OTEL_EXPORTER_OTLP_ENDPOINT)', () => {
  let stack: Stack;
  let receiver: Awaited<ReturnType<typeof otlpReceiver>>;
  let server: WatchedChild | undefined;
  let worker: WatchedChild | undefined;
  let apiUrl: string;
  beforeAll(async () => {
    stack = await startStack({ noWorker: true });
    receiver = await otlpReceiver();
    const env = {
      ...process.env,
      ...stack.env,
      LOG_LEVEL: 'info',
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_SERVICE_NAME: 'coexist-relay-test',
      // Nothing is exported before the shutdown: what arrives was flushed by it.
      OTEL_BSP_SCHEDULE_DELAY: '600000',
    };
    server = spawnWatched(process.execPath, ['--import', 'tsx', 'src/server-main.ts'], {
      cwd: ROOT,
      env: { ...env, PORT: '0' },
    });
    worker = spawnWatched(process.execPath, ['--import', 'tsx', 'src/worker-main.ts'], { cwd: ROOT, env });
    await Promise.all([
      server.ready(/"msg":"server listening"/, 90_000),
      worker.ready(/"msg":"worker running"/, 90_000),
    ]);
    apiUrl = /"url":"([^"]+)"/.exec(server.output())![1]!;
  }, 120_000);
  afterAll(async () => {
    for (const child of [server, worker]) if (child?.child.exitCode === null) child.child.kill('SIGKILL');
    await receiver?.stop();
    await stack?.stop();
  });

  async function call(key: string, method: string, p: string, body?: unknown, headers: Record<string, string> = {}) {
    const res = await fetch(apiUrl + p, {
      method,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  }

  it('exports one trace per send from the HTTP request through the workflow and activity to the Graph call, flushed at shutdown', async () => {
    const wabaId = uniqueDigits();
    const phone = uniqueDigits('6');
    const registered = await call(stack.opsKey, 'PUT', `/v1/phone-numbers/${phone}`, { wabaId, coexistence: true });
    expect(registered.status).toBe(201);
    // The caller's trace context (W3C traceparent) is continued by the request's span.
    const traceId = randomBytes(16).toString('hex');
    const callerSpanId = randomBytes(8).toString('hex');
    const text = (body: string) => ({ phoneNumberId: phone, to: '15550004444', type: 'text', text: { body } });
    const sent = await call(stack.sendKey, 'POST', '/v1/messages', text('traced'), {
      traceparent: `00-${traceId}-${callerSpanId}-01`,
    });
    expect(sent.status).toBe(202);
    const status = async (id: unknown) => (await call(stack.sendKey, 'GET', `/v1/messages/${String(id)}`)).json.status;
    // On a time-out, the children's last log lines say why.
    const logs = () => `\n--- server:\n${server!.output().slice(-4000)}\n--- worker:\n${worker!.output().slice(-8000)}`;
    const settled = (id: unknown, want: string) =>
      eventually(async () => (await status(id)) === want, 60_000).catch((err: Error) => {
        throw new Error(err.message + logs());
      });
    await settled(sent.json.id, 'sent');
    // Then a send that Meta refuses (131026; scripted only now, so it cannot hit the first one).
    stack.sim.scriptErrors(phone, [{ code: 131026, details: 'Message undeliverable' }]);
    const refused = await call(stack.sendKey, 'POST', '/v1/messages', text('refused'));
    expect(refused.status).toBe(202);
    await settled(refused.json.id, 'failed');
    expect(receiver.spans).toEqual([]);

    // SIGTERM: each process flushes its spans before it exits 0.
    server!.child.kill('SIGTERM');
    worker!.child.kill('SIGTERM');
    const exits = await Promise.all([server!.exited, worker!.exited]);
    expect(exits).toEqual([
      { code: 0, signal: null },
      { code: 0, signal: null },
    ]);
    expect(receiver.posts.length).toBeGreaterThan(0);
    expect(receiver.posts.every((p) => p === 'POST /v1/traces application/json')).toBe(true);
    const spans = receiver.spans;
    const one = (name: string, where: (s: ExportedSpan) => boolean = () => true): ExportedSpan => {
      const found = spans.filter((s) => s.name === name && where(s));
      expect(found.map((s) => s.name)).toEqual([name]);
      return found[0]!;
    };
    const inTrace = (id: string) => (s: ExportedSpan) => s.traceId === id;
    for (const s of spans) expect(s.resource['service.name']).toBe('coexist-relay-test');

    // The traced send: server → Temporal → worker → Graph, one trace, each span the child of the one before.
    const http = one('HTTP POST /v1/messages', inTrace(traceId));
    expect(http).toMatchObject({ parentSpanId: callerSpanId, kind: SPAN_KIND.SERVER });
    expect(http.resource['coexist_relay.component']).toBe('server');
    expect(http.attributes).toMatchObject({
      'http.request.method': 'POST',
      'http.route': '/v1/messages',
      'http.response.status_code': 202,
      'coexist_relay.waba_id': wabaId,
    });
    const start = one('StartWorkflow:sendMessageWorkflow', inTrace(traceId));
    expect(start.parentSpanId).toBe(http.spanId);
    expect(start.resource['coexist_relay.component']).toBe('server');
    const run = one('RunWorkflow:sendMessageWorkflow', inTrace(traceId));
    expect(run.parentSpanId).toBe(start.spanId);
    expect(run.resource['coexist_relay.component']).toBe('worker');
    const schedule = one('StartActivity:admit', inTrace(traceId));
    expect(schedule.parentSpanId).toBe(run.spanId);
    const activity = one('RunActivity:admit', inTrace(traceId));
    expect(activity.parentSpanId).toBe(schedule.spanId);
    expect(activity.resource['coexist_relay.component']).toBe('worker');
    const graph = one('graph send_message', inTrace(traceId));
    expect(graph).toMatchObject({ parentSpanId: activity.spanId, kind: SPAN_KIND.CLIENT });
    expect(graph.resource['coexist_relay.component']).toBe('worker');
    expect(graph.attributes).toMatchObject({
      'http.request.method': 'POST',
      'http.response.status_code': 200,
      'coexist_relay.waba_id': wabaId,
      'coexist_relay.phone_number_id': phone,
    });
    expect(graph.status?.code).not.toBe(STATUS_ERROR);

    // The refused send: a trace of its own (no traceparent), its Graph span an error with Meta's code.
    const otherHttp = one('HTTP POST /v1/messages', (s) => s.traceId !== traceId);
    expect(otherHttp.parentSpanId ?? '').toBe('');
    const failed = one('graph send_message', inTrace(otherHttp.traceId));
    expect(failed.attributes).toMatchObject({
      'http.response.status_code': 400,
      'coexist_relay.meta.error_code': 131026,
      'coexist_relay.meta.error_class': 'permanent',
    });
    expect(failed.status?.code).toBe(STATUS_ERROR);

    // Routes are named by their template; the ops call names no WABA in its path.
    const put = one('HTTP PUT /v1/phone-numbers/:phoneNumberId');
    expect(put.attributes).toMatchObject({
      'http.route': '/v1/phone-numbers/:phoneNumberId',
      'http.response.status_code': 201,
    });
    expect(spans.filter((s) => s.name === 'HTTP GET /v1/messages/:id').length).toBeGreaterThanOrEqual(2);

    // The traced run's history (activity headers carry the context) replays with and without the
    // tracing interceptors: tracing can be turned on or off while runs are open.
    const history = await stack.rt.temporal.workflow.getHandle(sendWorkflowId(sent.json.id as string)).fetchHistory();
    const scheduled = history.events?.find((e) => e.activityTaskScheduledEventAttributes);
    expect(Object.keys(scheduled?.activityTaskScheduledEventAttributes?.header?.fields ?? {})).toContain(
      '_tracer-data',
    );
    const noSink = { exporter: { export: { fn: () => undefined, callDuringReplay: false } } };
    await Worker.runReplayHistory({ workflowBundle: await sharedBundle() }, history, 'traced-send-plain-bundle');
    await Worker.runReplayHistory(
      { workflowBundle: await bundleWorkflows({ tracing: true }), sinks: noSink },
      history,
      'traced-send-tracing-bundle',
    );
  });
});
