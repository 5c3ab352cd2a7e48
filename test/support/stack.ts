import fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import { DefaultLogger, Runtime as TemporalRuntime } from '@temporalio/worker';
import { queryLifecycleState } from '../../src/lifecycle/launch';
import { bundleWorkflows } from '../../src/worker';
import { startService, type Service, type ServiceOptions } from '../../tools/stack';
import type { WabaLifecycleView } from '../../src/contracts';

/**
 * The real stack for one integration test file: the Temporal dev server and FerretDB started by
 * the global setup, plus, in process, a worker on its own task queue, the Koa app on a free port,
 * a fresh database and the Meta simulator. Nothing is mocked.
 */
export interface Stack extends Service {
  send(
    body: Record<string, unknown>,
    idempotencyKey?: string,
  ): Promise<{ status: number; json: Record<string, unknown> }>;
  /** `GET /v1/messages/:id` (the view senders get), or undefined when unknown. */
  message(id: string): Promise<MessageView | undefined>;
  ops(method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }>;
  /** The lifecycle workflow's `state` query, or undefined when no run is open. */
  lifecycleState(wabaId: string): Promise<WabaLifecycleView | undefined>;
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
  history?: { status: string; at: string; wamid?: string; by?: string; code?: number }[];
}

export const SEND_KEY = 'test-send-key';
export const OPS_KEY = 'test-ops-key';

export type StackOptions = Pick<ServiceOptions, 'env' | 'sim' | 'worker' | 'noWorker' | 'noRelay' | 'relay'> & {
  /** A Temporal server of the test's own (default: the global test server). */
  temporalAddress?: string;
};

export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const { TEMPORAL_ADDRESS, MONGODB_URI } = process.env;
  if (!TEMPORAL_ADDRESS || !MONGODB_URI)
    throw new Error('integration tests need the global setup (TEMPORAL_ADDRESS, MONGODB_URI)');
  if (!runtimeInstalled) {
    // The SDK's own worker logs: warnings only, unless asked.
    TemporalRuntime.install({ logger: new DefaultLogger(process.env.TEST_LOG_LEVEL === 'debug' ? 'DEBUG' : 'WARN') });
    runtimeInstalled = true;
  }
  const service = await startService({
    temporalAddress: options.temporalAddress ?? TEMPORAL_ADDRESS,
    mongoUri: MONGODB_URI,
    prefix: 'test',
    logLevel: process.env.TEST_LOG_LEVEL ?? 'silent',
    ...(options.noWorker ? { noWorker: true } : { workflowBundle: await sharedBundle() }),
    ...(options.sim ? { sim: options.sim } : {}),
    ...(options.worker ? { worker: options.worker } : {}),
    ...(options.noRelay ? { noRelay: true } : {}),
    ...(options.relay ? { relay: options.relay } : {}),
    // Probing Meta is off unless a test turns it on: most tests play webhooks without changing the
    // simulated number, so a probe would (rightly) find it usable and reopen the gate under them.
    env: { PAIR_LIMIT_INTERVAL_MS: '0', GATE_PROBE_INTERVAL: '0', ...options.env },
  });
  const { call } = service;
  return Object.assign(service, {
    send: (body: Record<string, unknown>, idempotencyKey?: string) =>
      call(SEND_KEY, 'POST', '/v1/messages', body, idempotencyKey ? { 'idempotency-key': idempotencyKey } : {}),
    ops: (method: string, path: string, body?: unknown) => call(OPS_KEY, method, path, body),
    async message(id: string) {
      // A test that polls many messages spends the key's burst like any client: it waits out the
      // API's 429 (Retry-After) instead of reading "unknown" (the limit is the product's, not the test's).
      for (;;) {
        const r = await call(SEND_KEY, 'GET', `/v1/messages/${id}`);
        if (r.status === 200) return r.json as unknown as MessageView;
        if (r.status === 404) return undefined;
        if (r.status !== 429) throw new Error(`GET /v1/messages/${id}: ${r.status} ${JSON.stringify(r.json)}`);
        await new Promise((res) => setTimeout(res, retryAfterMs(r.retryAfterSeconds)));
      }
    },
    lifecycleState: (wabaId: string) => queryLifecycleState(service.rt.launch, wabaId),
  });
}

/** A 429's `Retry-After` (seconds) in milliseconds, 1 s when absent. */
function retryAfterMs(seconds: number | undefined): number {
  return seconds !== undefined && Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : 1000;
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
