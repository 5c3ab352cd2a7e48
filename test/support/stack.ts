import fs from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { DefaultLogger, Runtime as TemporalRuntime, type Worker } from '@temporalio/worker';
import { createApp } from '../../src/http/app';
import { loadConfig, type Config } from '../../src/config';
import { createLogger } from '../../src/logger';
import { connectRuntime, type Runtime } from '../../src/runtime';
import { bundleWorkflows, createWorker, type WorkerDeps } from '../../src/worker';
import {
  startMetaSimulator,
  sendWebhook,
  type MetaSimulator,
  type MetaSimulatorOptions,
} from '../../tools/meta-sim/server';
import { accountUpdatePayload, type AccountUpdateEvent, type AccountUpdateOptions } from '../../tools/meta-sim/payloads';
import { stateQuery, wabaWorkflowId, type WabaLifecycleView } from '../../workflows/contracts';

/**
 * The real stack for one integration test file: the Temporal dev server and FerretDB started by
 * the global setup, plus, in process, a worker on its own task queue, the Koa app on a free port,
 * a fresh database and the Meta simulator. Nothing is mocked.
 */
export interface Stack {
  config: Config;
  /** The environment the config was loaded from (to start a worker process with the same settings). */
  env: Record<string, string>;
  rt: Runtime;
  sim: MetaSimulator;
  worker?: Worker;
  /** `http://127.0.0.1:<port>` of the Koa app. */
  url: string;
  appSecret: string;
  /** Sends a signed webhook body to the app; returns the HTTP status. */
  webhook(body: unknown): Promise<number>;
  /** Signed `account_update` webhook for one WABA. */
  accountUpdate(
    wabaId: string,
    event: AccountUpdateEvent,
    options?: AccountUpdateOptions & { noTime?: boolean },
  ): Promise<number>;
  /** Registers a phone number for a WABA through the ops API. */
  register(phoneNumberId: string, wabaId: string, body?: { mps?: number; coexistence?: boolean }): Promise<void>;
  send(
    body: Record<string, unknown>,
    idempotencyKey?: string,
  ): Promise<{ status: number; json: Record<string, unknown> }>;
  /** `GET /v1/messages/:id` (the view senders get), or undefined when unknown. */
  message(id: string): Promise<MessageView | undefined>;
  ops(method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }>;
  /** The lifecycle workflow's `state` query, or undefined when no run is open. */
  lifecycleState(wabaId: string): Promise<WabaLifecycleView | undefined>;
  stop(): Promise<void>;
}

let bundle: Promise<{ code: string }> | undefined;
let runtimeInstalled = false;
/** One workflow bundle per test file (or the one the global setup prebuilt). */
export function sharedBundle(): Promise<{ code: string }> {
  const prebuilt = process.env.WORKFLOW_BUNDLE_PATH;
  bundle ??=
    prebuilt && fs.existsSync(prebuilt)
      ? Promise.resolve({ code: fs.readFileSync(prebuilt, 'utf8') })
      : bundleWorkflows();
  return bundle;
}

/** Unique digits, so WABA and phone ids never collide between tests sharing one Temporal server. */
export const uniqueDigits = (prefix = '1'): string =>
  prefix +
  BigInt('0x' + randomBytes(6).toString('hex'))
    .toString()
    .padStart(15, '0');

/** The fields of `GET /v1/messages/:id` the tests look at. */
export interface MessageView {
  id: string;
  status: string;
  wamid?: string;
  reason?: string;
  error?: { code: number };
  deliveryStatus?: string;
  attempts: number;
  wabaId?: string;
}

export const SEND_KEY = 'send-key-test';
export const OPS_KEY = 'ops-key-test';

export interface StackOptions {
  env?: Record<string, string>;
  sim?: MetaSimulatorOptions;
  worker?: Pick<WorkerDeps, 'activityOverrides' | 'workerOptions'>;
  /** Start no in-process worker (a test runs its own, e.g. in a child process). */
  noWorker?: boolean;
}

export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const { TEMPORAL_ADDRESS, MONGODB_URI } = process.env;
  if (!TEMPORAL_ADDRESS || !MONGODB_URI)
    throw new Error('integration tests need the global setup (TEMPORAL_ADDRESS, MONGODB_URI)');
  if (!runtimeInstalled) {
    // The SDK's own worker logs: warnings only, unless asked.
    TemporalRuntime.install({ logger: new DefaultLogger(process.env.TEST_LOG_LEVEL === 'debug' ? 'DEBUG' : 'WARN') });
    runtimeInstalled = true;
  }
  const sim = await startMetaSimulator(options.sim);
  const id = randomBytes(4).toString('hex');
  const appSecret = 'app-secret-' + id;
  const env: Record<string, string> = {
    META_APP_SECRET: appSecret,
    META_VERIFY_TOKEN: 'verify-token',
    OPS_API_KEYS: OPS_KEY,
    SEND_API_KEYS: SEND_KEY,
    TEMPORAL_ADDRESS,
    TEMPORAL_TASK_QUEUE: `test-${id}`,
    MONGODB_URI,
    MONGODB_DB: `test_${id}`,
    GRAPH_API_BASE_URL: sim.url,
    GRAPH_API_TOKEN: 'sim-token',
    PORT: '0',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    PAIR_LIMIT_INTERVAL_MS: '0',
    ...options.env,
  };
  const config = loadConfig(env);
  const logger = createLogger(config.logLevel);
  const rt = await connectRuntime(config);
  const worker = options.noWorker
    ? undefined
    : (
        await createWorker({
          config,
          logger,
          c: rt.c,
          temporal: rt.temporal,
          graph: rt.graph,
          workflowBundle: await sharedBundle(),
          ...options.worker,
        })
      ).worker;
  const running = worker?.run();
  const app = createApp({ config, logger, db: rt.db, c: rt.c, temporal: rt.temporal });
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  async function call(key: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
    const res = await fetch(url + path, {
      method,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    return { status: res.status, json: (text ? JSON.parse(text) : {}) as Record<string, unknown> };
  }

  const stack: Stack = {
    config,
    env,
    rt,
    sim,
    worker,
    url,
    appSecret,
    async webhook(body) {
      const r = await sendWebhook({ targetUrl: url + config.webhook.path, appSecret, body: body as never });
      return r.status;
    },
    async accountUpdate(wabaId, event, opts = {}) {
      const payload = accountUpdatePayload(wabaId, event, opts);
      if (opts.noTime) for (const e of payload.entry) delete (e as { time?: unknown }).time;
      return stack.webhook(payload);
    },
    async register(phoneNumberId, wabaId, body = {}) {
      const r = await call(OPS_KEY, 'PUT', `/v1/phone-numbers/${phoneNumberId}`, { wabaId, ...body });
      if (r.status >= 300) throw new Error(`register failed: ${r.status} ${JSON.stringify(r.json)}`);
    },
    send: (body, idempotencyKey) =>
      call(SEND_KEY, 'POST', '/v1/messages', body, idempotencyKey ? { 'idempotency-key': idempotencyKey } : {}),
    ops: (method, path, body) => call(OPS_KEY, method, path, body),
    async message(id) {
      const r = await call(SEND_KEY, 'GET', `/v1/messages/${id}`);
      return r.status === 200 ? (r.json as unknown as MessageView) : undefined;
    },
    async lifecycleState(wabaId) {
      try {
        return await rt.temporal.workflow.getHandle(wabaWorkflowId(wabaId)).query(stateQuery);
      } catch {
        return undefined;
      }
    },
    async stop() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      worker?.shutdown();
      await running;
      await rt.db.dropDatabase().catch(() => undefined);
      await rt.close();
      await sim.stop();
    },
  };
  return stack;
}

/** Polls `fn` until it returns a truthy value (or throws the last error after `timeoutMs`). */
export async function eventually<T>(
  fn: () => Promise<T | undefined | false>,
  timeoutMs = 20_000,
  everyMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(`condition not met within ${timeoutMs} ms${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
