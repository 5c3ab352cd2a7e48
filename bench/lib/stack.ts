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
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { DefaultLogger, Runtime as TemporalRuntime } from '@temporalio/worker';
import { bundleWorkflows } from '../../src/worker';
import {
  startInfra,
  startService as startStackService,
  within,
  type Infra,
  type Service as StackService,
  type ServiceOptions as StackServiceOptions,
} from '../../tools/stack';
import type { SqliteSynchronous } from '../../tools/infra/servers';
import { onInterrupt, traceCommands } from './report';

export type TemporalDbMode = 'memory' | 'file';

export interface BenchServers {
  infra: Infra;
  temporal: { address: string; namespace: string; dbFile?: string };
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
  /** FerretDB's SQLite `synchronous` (`--synchronous`); default the wrapper's, `normal`. */
  ferretdbSynchronous?: SqliteSynchronous;
}

const say = (line: string): void => {
  process.stderr.write(`[bench] ${line}\n`);
};
export { say };

/** Starts a fresh Temporal dev server and FerretDB for one benchmark. */
export async function startServers(name: string, opts: ServersOptions = {}): Promise<BenchServers> {
  const temporalDb = opts.temporalDb ?? 'memory';
  const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), `coexist-relay-bench-${name}-`));
  let infra: Infra;
  try {
    infra = await startInfra({
      dir: tmpDir,
      log: say,
      ...(opts.mongodbUri ? { mongodbUri: opts.mongodbUri } : {}),
      ...(opts.ferretdbSynchronous ? { ferretdbSynchronous: opts.ferretdbSynchronous } : {}),
      ...(temporalDb === 'file' ? { temporalDbFile: path.join(tmpDir, 'temporal.sqlite') } : {}),
    });
  } catch (err) {
    fs.rmSync(tmpDir, { recursive: true, force: true });
    throw err;
  }
  say(
    `Temporal dev server ${infra.temporalAddress} (${temporalDb === 'file' ? `SQLite file ${infra.temporal?.dbFile}` : 'in-memory'}), ` +
      `${infra.ferretdb ? `FerretDB ${infra.mongoUri} (synchronous ${opts.ferretdbSynchronous ?? 'normal'})` : `external MongoDB ${infra.mongoUri}`}; logs in ${tmpDir}`,
  );
  let stopping: Promise<void> | undefined;
  const stopAll = (keepDir: boolean): Promise<void> =>
    (stopping ??= (async () => {
      unregister();
      await infra.stop();
      if (keepDir) say(`kept ${tmpDir}`);
      else fs.rmSync(tmpDir, { recursive: true, force: true });
    })());
  const unregister = onInterrupt(() => stopAll(false));
  return {
    infra,
    temporal: { address: infra.temporalAddress, namespace: infra.temporalNamespace, dbFile: infra.temporal?.dbFile },
    mongoUri: infra.mongoUri,
    tmpDir,
    temporalDb,
    stop: (keepDir = false) => stopAll(keepDir),
  };
}

let runtimeInstalled = false;
let sdkMetricsUrl: string | undefined;
/** The SDK's own logs: warnings and worse only. With `metricsPort`, the SDK's Prometheus metrics
 *  (`temporal_…`: workflow tasks, sticky cache hits and misses, activities) on that loopback port,
 *  read by `sdkMetrics()`. The runtime is installed once per process: the first call decides. */
export function installTemporalRuntime(metricsPort?: number): void {
  if (runtimeInstalled) return;
  const bind = metricsPort === undefined ? undefined : `127.0.0.1:${metricsPort}`;
  TemporalRuntime.install({
    logger: new DefaultLogger('WARN'),
    ...(bind
      ? { telemetryOptions: { metrics: { prometheus: { bindAddress: bind, useSecondsForDurations: true } } } }
      : {}),
  });
  if (bind) sdkMetricsUrl = `http://${bind}/metrics`;
  runtimeInstalled = true;
}

/** The SDK's metrics of this process summed over their labels, by name (empty without a metrics
 *  port given to `installTemporalRuntime`). */
export async function sdkMetrics(): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  if (!sdkMetricsUrl) return out;
  const text = await (await fetch(sdkMetricsUrl)).text();
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{[^}]*\})? ([^ ]+)/.exec(line);
    if (m) out.set(m[1]!, (out.get(m[1]!) ?? 0) + Number(m[2]));
  }
  return out;
}

export const SEND_KEY = 'bench-send-key';
export const OPS_KEY = 'bench-ops-key';

export interface ServiceOptions extends Pick<StackServiceOptions, 'env' | 'sim' | 'worker' | 'relay'> {
  logLevel?: string;
  /** Serve the SDK's own metrics on this loopback port (see `sdkMetrics`). */
  sdkMetricsPort?: number;
  /** Time every MongoDB command of the service's client (see `Service.dbTrace`). */
  traceDb?: boolean;
}

export interface Service extends StackService {
  worker: NonNullable<StackService['worker']>;
  /** With `traceDb`: per-command timings of the service's MongoDB client (worker and app). */
  dbTrace?: Awaited<ReturnType<typeof traceCommands>>;
}

/** The service in this process against `servers` (tools/stack.ts), plus the benchmark's extras. */
export async function startService(servers: BenchServers, options: ServiceOptions = {}): Promise<Service> {
  installTemporalRuntime(options.sdkMetricsPort);
  const service = await startStackService({
    temporalAddress: servers.temporal.address,
    temporalNamespace: servers.temporal.namespace,
    mongoUri: servers.mongoUri,
    prefix: 'bench',
    logLevel: options.logLevel ?? 'warn',
    workflowBundle: await bundleWorkflows(),
    // Probes off unless a benchmark turns them on: the simulator's numbers are never told they are
    // offboarded, so a probe (every minute) would find them usable and reopen a gate mid-benchmark.
    env: { GATE_PROBE_INTERVAL: '0', ...options.env },
    ...(options.sim ? { sim: options.sim } : {}),
    ...(options.worker ? { worker: options.worker } : {}),
    ...(options.relay ? { relay: options.relay } : {}),
  });
  const dbTrace = options.traceDb ? await traceCommands(service.rt.mongo) : undefined;
  const unregister = onInterrupt(() => service.stop());
  const stop = service.stop;
  return Object.assign(service, {
    worker: service.worker!,
    dbTrace,
    stop: async () => {
      unregister();
      await stop();
    },
  });
}

/**
 * `n` more workers as child processes (`src/worker-main.ts`, as `npm run worker` runs them) on the
 * service's task queue and database, beside its in-process worker; resolves once each says it
 * runs. `stop()` kills them.
 */
export async function spawnWorkers(svc: Service, n: number): Promise<{ stop(): Promise<void> }> {
  const children = Array.from({ length: n }, () =>
    spawn(process.execPath, ['--import', 'tsx', 'src/worker-main.ts'], {
      cwd: path.join(__dirname, '../..'),
      env: { ...process.env, ...svc.env, LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'inherit'],
    }),
  );
  await Promise.all(
    children.map(
      (child) =>
        new Promise<void>((resolve, reject) => {
          let out = '';
          const onData = (b: Buffer) => {
            out += b.toString();
            if (out.includes('"msg":"worker running"')) {
              child.stdout!.off('data', onData);
              child.stdout!.resume();
              resolve();
            }
          };
          child.stdout!.on('data', onData);
          child.once('exit', (code) => reject(new Error(`a worker child exited (${code}) before running:\n${out}`)));
        }),
    ),
  );
  return {
    async stop() {
      await Promise.all(
        children.map((c) =>
          c.exitCode !== null ? undefined : new Promise((r) => (c.once('exit', r), c.kill('SIGKILL'))),
        ),
      );
    },
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

export { within };

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A local forward target: answers 204 and counts the requests it received. */
export interface ForwardReceiver {
  url: string;
  received(): number;
  /** `FORWARD_TARGETS` naming this receiver (target `bench`, a fresh secret). */
  forwardTargets: string;
  stop(): Promise<void>;
}

/** Starts a `ForwardReceiver` on a free loopback port. */
export async function startForwardReceiver(): Promise<ForwardReceiver> {
  let received = 0;
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      received++;
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`;
  return {
    url,
    received: () => received,
    forwardTargets: JSON.stringify([{ name: 'bench', url, secrets: [`whsec_${randomBytes(32).toString('base64')}`] }]),
    stop: () => new Promise((r) => server.close(() => r())),
  };
}
