/**
 * The real stack for one benchmark process: a fresh Temporal dev server and a fresh FerretDB
 * (started from the cached binaries, on free loopback ports, in a temp dir), then in this process
 * the Meta simulator, the service's worker and the Koa app, wired exactly as `src/` wires them
 * (the same pattern as test/support/stack.ts, copied rather than imported: bench never imports
 * test code). Nothing is mocked.
 *
 * Temporal: in-memory by default (`temporal server start-dev` without `--db-filename`: SQLite in
 * memory); `--temporal-db file` uses a temp SQLite file (WAL, synchronous=NORMAL) instead.
 * FerretDB: SQLite files in the temp dir. Both are stopped, and the temp dir removed, by `stop()`
 * (and by the servers module's exit hooks if the process dies).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { DefaultLogger, Runtime as TemporalRuntime, type Worker } from '@temporalio/worker';
import { createApp } from '../../src/http/app';
import { loadConfig, type Config } from '../../src/config';
import { ensureBinaries } from '../../tools/infra/binaries';
import { startFerretDb, startTemporalDevServer, type FerretDb, type TemporalDevServer } from '../../tools/infra/servers';
import { createLogger, type Logger } from '../../src/logger';
import {
  sendWebhook,
  startMetaSimulator,
  type MetaSimulator,
  type MetaSimulatorOptions,
} from '../../tools/meta-sim/server';
import { accountUpdatePayload, type AccountUpdateEvent } from '../../tools/meta-sim/payloads';
import { connectRuntime, type Runtime } from '../../src/runtime';
import { bundleWorkflows, createWorker, type WorkerDeps } from '../../src/worker';
import { SEARCH_ATTRIBUTES } from '../../workflows/contracts';
import { onInterrupt, traceCommands } from './report';

export type TemporalDbMode = 'memory' | 'file';

export interface BenchServers {
  temporal: TemporalDevServer;
  /** Absent when an external MongoDB was given. */
  ferretdb?: FerretDb;
  /** FerretDB's, or the external one. */
  mongoUri: string;
  tmpDir: string;
  temporalDb: TemporalDbMode;
  /** Stops both servers; removes the temp dir unless `keepDir`. */
  stop(keepDir?: boolean): Promise<void>;
}

export interface ServersOptions {
  temporalDb?: TemporalDbMode;
  /** Use this MongoDB instead of starting FerretDB (each service still gets its own database). */
  mongodbUri?: string;
}

const say = (line: string): void => {
  process.stderr.write(`[bench] ${line}\n`);
};
export { say };

/** Starts a fresh Temporal dev server and FerretDB for one benchmark. */
export async function startServers(name: string, opts: ServersOptions = {}): Promise<BenchServers> {
  const temporalDb = opts.temporalDb ?? 'memory';
  const { temporal: temporalCli, ferretdb: ferretdbBin } = await ensureBinaries({ log: say });
  const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), `coexist-relay-bench-${name}-`));
  let ferretdb: FerretDb | undefined;
  let temporal: TemporalDevServer | undefined;
  try {
    // One after the other: each picks free ports (start-dev also picks some of its own).
    if (!opts.mongodbUri)
      ferretdb = await startFerretDb({ binary: ferretdbBin, sqliteDir: path.join(tmpDir, 'ferretdb'), logDir: tmpDir });
    temporal = await startTemporalDevServer({
      binary: temporalCli,
      logDir: tmpDir,
      namespace: 'default',
      searchAttributes: SEARCH_ATTRIBUTES,
      ...(temporalDb === 'file' ? { dbFile: path.join(tmpDir, 'temporal.sqlite') } : {}),
    });
  } catch (err) {
    await Promise.allSettled([temporal?.stop(), ferretdb?.stop()]);
    fs.rmSync(tmpDir, { recursive: true, force: true });
    throw err;
  }
  const mongoUri = opts.mongodbUri ?? ferretdb!.uri;
  say(
    `Temporal dev server ${temporal.address} (${temporalDb === 'file' ? `SQLite file ${temporal.dbFile}` : 'in-memory'}), ` +
      `${ferretdb ? `FerretDB ${ferretdb.uri}` : `external MongoDB ${mongoUri}`}; logs in ${tmpDir}`,
  );
  const t = temporal;
  const f = ferretdb;
  let stopping: Promise<void> | undefined;
  const stopAll = (keepDir: boolean): Promise<void> =>
    (stopping ??= (async () => {
      unregister();
      await Promise.allSettled([t.stop(), f?.stop()]);
      if (keepDir) say(`kept ${tmpDir}`);
      else fs.rmSync(tmpDir, { recursive: true, force: true });
    })());
  const unregister = onInterrupt(() => stopAll(false));
  return { temporal: t, ferretdb: f, mongoUri, tmpDir, temporalDb, stop: (keepDir = false) => stopAll(keepDir) };
}

let runtimeInstalled = false;
/** The SDK's own logs: warnings and worse only. */
export function installTemporalRuntime(): void {
  if (runtimeInstalled) return;
  TemporalRuntime.install({ logger: new DefaultLogger('WARN') });
  runtimeInstalled = true;
}

export const SEND_KEY = 'bench-send-key';
export const OPS_KEY = 'bench-ops-key';

export interface ServiceOptions {
  /** Extra environment for `loadConfig` (e.g. PAIR_LIMIT_*). */
  env?: Record<string, string>;
  sim?: MetaSimulatorOptions;
  worker?: Pick<WorkerDeps, 'activityOverrides' | 'workerOptions'>;
  logLevel?: string;
  /** Time every MongoDB command of the service's client (see `Service.dbTrace`). */
  traceDb?: boolean;
}

export interface Service {
  config: Config;
  logger: Logger;
  rt: Runtime;
  sim: MetaSimulator;
  worker: Worker;
  url: string;
  appSecret: string;
  webhookUrl: string;
  /** With `traceDb`: per-command timings of the service's MongoDB client (worker and app). */
  dbTrace?: Awaited<ReturnType<typeof traceCommands>>;
  /** Signed `account_update` webhook through the real endpoint; resolves with the status once answered. */
  accountUpdate(wabaId: string, event: AccountUpdateEvent): Promise<number>;
  /** `PUT /v1/phone-numbers/:id` through the ops API. */
  register(phoneNumberId: string, wabaId: string, body?: { mps?: number; coexistence?: boolean }): Promise<void>;
  stop(): Promise<void>;
}

/**
 * The service in this process against `servers`: config from an env map (as the real entry points
 * read it), `connectRuntime`, `createWorker` (running), `createApp` (listening on a free port),
 * and a Meta simulator as the Graph API.
 */
export async function startService(servers: BenchServers, options: ServiceOptions = {}): Promise<Service> {
  installTemporalRuntime();
  const sim = await startMetaSimulator(options.sim);
  const id = randomBytes(4).toString('hex');
  const appSecret = 'bench-app-secret-' + id;
  const config = loadConfig({
    META_APP_SECRET: appSecret,
    META_VERIFY_TOKEN: 'bench-verify-token',
    OPS_API_KEYS: OPS_KEY,
    SEND_API_KEYS: SEND_KEY,
    TEMPORAL_ADDRESS: servers.temporal.address,
    TEMPORAL_NAMESPACE: servers.temporal.namespace,
    TEMPORAL_TASK_QUEUE: `bench-${id}`,
    MONGODB_URI: servers.mongoUri,
    MONGODB_DB: `bench_${id}`,
    GRAPH_API_BASE_URL: sim.url,
    GRAPH_API_TOKEN: 'sim-token',
    PORT: '0',
    LOG_LEVEL: options.logLevel ?? 'warn',
    ...options.env,
  });
  const logger = createLogger(config.logLevel);
  const rt = await connectRuntime(config);
  const dbTrace = options.traceDb ? await traceCommands(rt.mongo) : undefined;
  const { worker, connection } = await createWorker({
    config,
    logger,
    c: rt.c,
    temporal: rt.temporal,
    graph: rt.graph,
    workflowBundle: await bundleWorkflows(),
    ...options.worker,
  });
  const running = worker.run();
  const app = createApp({ config, logger, db: rt.db, c: rt.c, temporal: rt.temporal });
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const webhookUrl = url + config.webhook.path;
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      unregister();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      worker.shutdown();
      await within(30_000, running);
      await within(5_000, connection.close());
      // Bounded: a wedged FerretDB must not keep the benchmark from stopping its servers.
      await within(5_000, rt.db.dropDatabase());
      await within(5_000, rt.close());
      await sim.stop();
    })());
  const unregister = onInterrupt(stop);

  return {
    config,
    logger,
    rt,
    sim,
    worker,
    url,
    appSecret,
    webhookUrl,
    dbTrace,
    async accountUpdate(wabaId, event) {
      const r = await sendWebhook({ targetUrl: webhookUrl, appSecret, body: accountUpdatePayload(wabaId, event) });
      return r.status;
    },
    async register(phoneNumberId, wabaId, body = {}) {
      const res = await fetch(`${url}/v1/phone-numbers/${phoneNumberId}`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${OPS_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ wabaId, ...body }),
      });
      if (res.status >= 300) throw new Error(`register ${phoneNumberId} failed: ${res.status} ${await res.text()}`);
    },
    stop,
  };
}

/** Unique digit ids (WABA, phone number) per run. */
export const uniqueDigits = (prefix = '1'): string =>
  prefix +
  BigInt('0x' + randomBytes(6).toString('hex'))
    .toString()
    .padStart(15, '0');

/** Epoch ms with sub-ms precision, the same clock as the simulator's `at`. */
export const nowMs = (): number => performance.timeOrigin + performance.now();

/** Waits for `p` at most `ms`; errors and timeouts are ignored. */
export async function within(ms: number, p: Promise<unknown>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p.catch(() => undefined), new Promise((r) => (timer = setTimeout(r, ms)))]);
  clearTimeout(timer);
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
