/**
 * The one stack helper, shared by the dev launcher, the Jest global setup, the per-file test
 * stack and the benchmarks:
 *
 * - `startInfra`: the Temporal dev server and FerretDB from the cached binaries (our search
 *   attributes registered), each unless an external address is given; one stop for both.
 * - `startService`: the service in this process against them: config from an env map (as the
 *   entry points read it), `connectRuntime`, a running worker (unless `noWorker`), the Koa app on a
 *   free loopback port, and the Meta simulator as the Graph API. Nothing is mocked.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { NativeConnection, Worker } from '@temporalio/worker';
import { loadConfig, type Config } from '../src/config';
import { createApp } from '../src/http/app';
import { createRelayMetrics, type RelayMetrics } from '../src/http/metrics';
import { createLogger, type Logger } from '../src/logger';
import { connectRuntime, type Runtime } from '../src/runtime';
import { createWorker, type WorkerDeps } from '../src/worker';
import type { SharedClock } from '../src/sending/shared-clock';
import { startOutboxRelay, type OutboxRelay, type OutboxRelayOptions } from '../src/lifecycle/outbox-relay';
import { startForwarder } from '../src/relay/forwarder';
import { reportForwardBacklog } from '../src/relay/launch';
import { SEARCH_ATTRIBUTES } from '../src/contracts';
import { ensureBinaries } from './infra/binaries';
import {
  startFerretDb,
  startTemporalDevServer,
  type FerretDb,
  type SqliteSynchronous,
  type TemporalDevServer,
} from './infra/servers';
import { sendWebhook, startMetaSimulator, type MetaSimulator, type MetaSimulatorOptions } from './meta-sim/server';
import { accountUpdatePayload, type AccountUpdateEvent, type AccountUpdateOptions } from './meta-sim/payloads';

export interface InfraOptions {
  /** Logs, FerretDB's SQLite files and (with `temporalDbFile`) Temporal's db go here. */
  dir: string;
  /** Use this Temporal server instead of starting one. */
  temporalAddress?: string;
  /** Use this MongoDB instead of starting FerretDB. */
  mongodbUri?: string;
  /** Persistent Temporal db file (in-memory when absent). */
  temporalDbFile?: string;
  temporalPort?: number;
  /** Serve Temporal's Web UI (on `temporalUiPort`, or a free port). */
  temporalUi?: boolean;
  temporalUiPort?: number;
  ferretdbPort?: number;
  /** FerretDB's SQLite `synchronous` (see `FerretDbOptions.synchronous`); default the wrapper's, `normal`. */
  ferretdbSynchronous?: SqliteSynchronous;
  /** Where progress lines go (binary builds); default stderr. */
  log?: (line: string) => void;
}

export interface Infra {
  temporalAddress: string;
  temporalNamespace: string;
  mongoUri: string;
  /** Absent when external. */
  temporal?: TemporalDevServer;
  ferretdb?: FerretDb;
  /** The cached Temporal CLI (for tests that need a server of their own). */
  temporalCli: string;
  uiUrl?: string;
  /** Stops what this call started. Idempotent. */
  stop(): Promise<void>;
}

/** Starts (or adopts) Temporal and the MongoDB-wire store. On failure nothing is left running. */
export async function startInfra(opts: InfraOptions): Promise<Infra> {
  const { temporal: temporalCli, ferretdb: ferretdbBin } = await ensureBinaries(opts.log ? { log: opts.log } : {});
  let ferretdb: FerretDb | undefined;
  let temporal: TemporalDevServer | undefined;
  try {
    // One after the other: each picks free ports, and start-dev picks several of its own.
    if (!opts.mongodbUri) {
      ferretdb = await startFerretDb({
        binary: ferretdbBin,
        sqliteDir: path.join(opts.dir, 'ferretdb'),
        logDir: opts.dir,
        ...(opts.ferretdbPort ? { port: opts.ferretdbPort } : {}),
        ...(opts.ferretdbSynchronous ? { synchronous: opts.ferretdbSynchronous } : {}),
      });
    }
    if (!opts.temporalAddress) {
      temporal = await startTemporalDevServer({
        binary: temporalCli,
        logDir: opts.dir,
        namespace: 'default',
        searchAttributes: SEARCH_ATTRIBUTES,
        ...(opts.temporalPort ? { port: opts.temporalPort } : {}),
        ...(opts.temporalUi ? { ui: true, ...(opts.temporalUiPort ? { uiPort: opts.temporalUiPort } : {}) } : {}),
        ...(opts.temporalDbFile ? { dbFile: opts.temporalDbFile } : {}),
      });
    }
  } catch (err) {
    await Promise.allSettled([temporal?.stop(), ferretdb?.stop()]);
    throw err;
  }
  let stopping: Promise<void> | undefined;
  return {
    temporalAddress: opts.temporalAddress ?? temporal!.address,
    temporalNamespace: temporal?.namespace ?? 'default',
    mongoUri: opts.mongodbUri ?? ferretdb!.uri,
    ...(temporal ? { temporal } : {}),
    ...(ferretdb ? { ferretdb } : {}),
    temporalCli,
    ...(temporal?.uiUrl ? { uiUrl: temporal.uiUrl } : {}),
    stop: () => (stopping ??= Promise.allSettled([temporal?.stop(), ferretdb?.stop()]).then(() => undefined)),
  };
}

export interface ServiceOptions {
  temporalAddress: string;
  temporalNamespace?: string;
  mongoUri: string;
  /** Extra environment for `loadConfig` (e.g. PAIR_LIMIT_*), over the defaults below. */
  env?: Record<string, string>;
  sim?: MetaSimulatorOptions;
  worker?: Pick<WorkerDeps, 'activityOverrides' | 'workerOptions'>;
  /** Start no in-process worker (a test runs its own, e.g. in a child process). */
  noWorker?: boolean;
  /** A prebuilt workflow bundle (bundling takes seconds); the worker bundles at start otherwise. */
  workflowBundle?: { code: string };
  /** Run no outbox relay in this process (a test starts one itself, e.g. after a "crash"). */
  noRelay?: boolean;
  relay?: OutboxRelayOptions;
  /** Names the API keys, secrets, task queue and database (`test`, `bench`). */
  prefix?: string;
  logLevel?: string;
}

export interface Service {
  config: Config;
  /** The environment the config was loaded from (to start a worker process with the same settings). */
  env: Record<string, string>;
  logger: Logger;
  rt: Runtime;
  /** The metrics the app's /metrics shows (the in-process worker counts into them too). */
  metrics: RelayMetrics;
  sim: MetaSimulator;
  worker?: Worker;
  /** The outbox relay of this instance (absent with `noRelay`). */
  relay?: OutboxRelay;
  /** `http://127.0.0.1:<port>` of the Koa app. */
  url: string;
  webhookUrl: string;
  appSecret: string;
  sendKey: string;
  opsKey: string;
  /** Sends a signed webhook body to the app; returns the HTTP status. */
  webhook(body: unknown): Promise<number>;
  /** Signed `account_update` webhook for one WABA (`noTime` drops Meta's `entry[].time`). */
  accountUpdate(
    wabaId: string,
    event: AccountUpdateEvent,
    options?: AccountUpdateOptions & { noTime?: boolean },
  ): Promise<number>;
  /** An authenticated JSON call to the app. */
  call(
    key: string,
    method: string,
    path: string,
    body?: unknown,
    headers?: Record<string, string>,
  ): Promise<{ status: number; json: Record<string, unknown>; retryAfterSeconds?: number | undefined }>;
  /** Registers a phone number for a WABA through the ops API. */
  register(phoneNumberId: string, wabaId: string, body?: { mps?: number; coexistence?: boolean }): Promise<void>;
  /** Stops the app, the worker, the clients and the simulator, and drops the service's database. Idempotent. */
  stop(): Promise<void>;
}

/** Waits for `p` at most `ms`; errors and timeouts are ignored. */
export async function within(ms: number, p: Promise<unknown>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p.catch(() => undefined), new Promise((r) => (timer = setTimeout(r, ms)))]);
  clearTimeout(timer);
}

/** The service in this process against a Temporal server and a MongoDB-wire store. */
export async function startService(opts: ServiceOptions): Promise<Service> {
  const prefix = opts.prefix ?? 'svc';
  const sim = await startMetaSimulator(opts.sim);
  const id = randomBytes(4).toString('hex');
  const appSecret = `${prefix}-app-secret-${id}`;
  const sendKey = `${prefix}-send-key`;
  const opsKey = `${prefix}-ops-key`;
  const env: Record<string, string> = {
    META_APP_SECRET: appSecret,
    META_VERIFY_TOKEN: 'verify-token',
    OPS_API_KEYS: opsKey,
    SEND_API_KEYS: sendKey,
    TEMPORAL_ADDRESS: opts.temporalAddress,
    TEMPORAL_NAMESPACE: opts.temporalNamespace ?? 'default',
    TEMPORAL_TASK_QUEUE: `${prefix}-${id}`,
    MONGODB_URI: opts.mongoUri,
    MONGODB_DB: `${prefix}_${id}`,
    GRAPH_API_BASE_URL: sim.url,
    GRAPH_API_TOKEN: 'sim-token',
    PORT: '0',
    LOG_LEVEL: opts.logLevel ?? 'silent',
    ...opts.env,
  };
  const config = loadConfig(env);
  const logger = createLogger(config.logLevel);
  const rt = await connectRuntime(config);
  const metrics = createRelayMetrics();
  let worker: Worker | undefined;
  let connection: NativeConnection | undefined;
  let clock: SharedClock | undefined;
  if (!opts.noWorker) {
    ({ worker, connection, clock } = await createWorker({
      config,
      logger,
      db: rt.db,
      c: rt.c,
      launch: rt.launch,
      graph: rt.graph,
      metrics,
      ...(opts.workflowBundle ? { workflowBundle: opts.workflowBundle } : {}),
      ...opts.worker,
    }));
  }
  const running = worker?.run();
  const relay = opts.noRelay ? undefined : startOutboxRelay({ c: rt.c, launch: rt.launch, logger }, opts.relay);
  const forwarder = opts.noRelay
    ? undefined
    : startForwarder(
        { c: rt.c, logger, forward: config.forward, reportBacklog: (r) => reportForwardBacklog(rt.launch, r) },
        { pollMs: 200 },
      );
  const app = createApp({
    config,
    logger,
    c: rt.c,
    launch: rt.launch,
    readiness: rt.readiness,
    metrics,
    ...(relay ? { outbox: relay } : {}),
  });
  // Handlers still running when the test closes the connections keep calling Temporal and
  // MongoDB; stop() waits for them before closing those clients (a retry timer of a closed
  // client would otherwise fire after the test file ended).
  let handling = 0;
  app.middleware.unshift(async (_ctx, next) => {
    handling++;
    try {
      await next();
    } finally {
      handling--;
    }
  });
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const webhookUrl = url + config.webhook.path;

  async function call(key: string, method: string, p: string, body?: unknown, headers: Record<string, string> = {}) {
    const res = await fetch(url + p, {
      method,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    const retryAfter = res.headers.get('retry-after');
    return {
      status: res.status,
      json: (text ? JSON.parse(text) : {}) as Record<string, unknown>,
      // Undefined unless the answer has one (toEqual ignores an undefined field).
      retryAfterSeconds: retryAfter === null ? undefined : Number(retryAfter),
    };
  }

  let stopping: Promise<void> | undefined;
  const service: Service = {
    config,
    env,
    logger,
    rt,
    metrics,
    sim,
    ...(worker ? { worker } : {}),
    ...(relay ? { relay } : {}),
    url,
    webhookUrl,
    appSecret,
    sendKey,
    opsKey,
    async webhook(body) {
      return (await sendWebhook({ targetUrl: webhookUrl, appSecret, body: body as never })).status;
    },
    async accountUpdate(wabaId, event, o = {}) {
      const payload = accountUpdatePayload(wabaId, event, o);
      if (o.noTime) for (const e of payload.entry) delete (e as { time?: unknown }).time;
      return service.webhook(payload);
    },
    call,
    async register(phoneNumberId, wabaId, body = {}) {
      const r = await call(opsKey, 'PUT', `/v1/phone-numbers/${phoneNumberId}`, { wabaId, ...body });
      if (r.status >= 300) throw new Error(`register ${phoneNumberId} failed: ${r.status} ${JSON.stringify(r.json)}`);
    },
    stop: () =>
      (stopping ??= (async () => {
        server.closeAllConnections();
        await new Promise((r) => server.close(r));
        for (let waited = 0; handling > 0 && waited < 15_000; waited += 50) await new Promise((r) => setTimeout(r, 50));
        if (relay) await within(10_000, relay.stop());
        if (forwarder) await within(10_000, forwarder.stop());
        worker?.shutdown();
        await within(30_000, running ?? Promise.resolve());
        clock?.stop();
        if (connection) await within(5_000, connection.close());
        // Bounded: a wedged store must not keep the caller from stopping its servers.
        await within(5_000, rt.db.dropDatabase());
        await within(5_000, rt.close());
        await sim.stop();
      })()),
  };
  return service;
}
