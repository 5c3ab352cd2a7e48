/**
 * The dev launcher (`npm run dev`): the whole stack on one machine.
 *
 * - Temporal dev server (persistent SQLite file in `.data/`, Web UI on) unless TEMPORAL_ADDRESS is set;
 * - FerretDB (SQLite files in `.data/`) unless MONGODB_URI is set; SQLite `synchronous=NORMAL` (no
 *   fsync per commit: a crash loses nothing, a power cut may lose the last commits), or
 *   `DEV_SQLITE_SYNCHRONOUS=full` for an fsync per commit;
 * - the Meta Cloud API simulator unless GRAPH_API_BASE_URL is set;
 * - the worker and the HTTP server (with the outbox relay), in this process; with `DEV_SPLIT=1`
 *   as two child processes (`src/worker-main.ts`, `src/server-main.ts`, each with Node's heap
 *   limit `DEV_HEAP_MB`, default 1024), restarted if one dies, so an API overload cannot kill
 *   drains.
 *
 * Missing secrets get dev defaults (printed). Ctrl-C stops everything; a rerun finds the persisted
 * workflows and data.
 */
import fs from 'node:fs';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { REPO_ROOT } from './infra/binaries';
import { startInfra } from './stack';
import { parseSqliteSynchronous } from './infra/servers';
import { ConfigError, loadConfig } from '../src/config';
import { createLogger } from '../src/logger';
import { onShutdown } from '../src/boot';
import { startMetaSimulator } from './meta-sim/server';
import { connectRuntime } from '../src/runtime';
import { startServer } from '../src/server';
import { createRelayMetrics } from '../src/http/metrics';
import { installTemporalRuntime, requestShutdown, startWorkerProcess } from '../src/worker';
import { startOutboxRelay } from '../src/lifecycle/outbox-relay';
import { startForwarder } from '../src/relay/forwarder';
import { reportForwardBacklog } from '../src/relay/launch';
import { withTimeout } from '../src/util/time';
import { redactUri } from '../src/util/redact';
import { startTracing } from '../src/telemetry';

const DEV_DEFAULTS: Record<string, string> = {
  META_APP_SECRET: 'dev-app-secret',
  META_VERIFY_TOKEN: 'dev-verify-token',
  OPS_API_KEYS: 'dev-ops-key',
  SEND_API_KEYS: 'dev-send-key',
  GRAPH_API_TOKEN: 'dev-graph-token',
};

/** Heap limit (MiB) of each split child; the same default as the start scripts and the image. */
const DEFAULT_HEAP_MB = '1024';

/**
 * `DEV_SPLIT=1`: the worker and the API as two supervised child processes with the same env. A
 * child that dies (e.g. the API out of memory) is restarted after a second; the other keeps
 * running. Resolves to the stop function.
 */
function startSplit(env: Record<string, string | undefined>, heapMb: string): () => Promise<void> {
  const children = new Map<string, ChildProcess>();
  let stopping = false;
  const run = (name: string, entry: string): void => {
    const child = spawn(
      process.execPath,
      [`--max-old-space-size=${heapMb}`, '--import', 'tsx', path.join(REPO_ROOT, entry)],
      { env: env as NodeJS.ProcessEnv, stdio: 'inherit', cwd: REPO_ROOT },
    );
    children.set(name, child);
    child.on('exit', (code, signal) => {
      children.delete(name);
      if (stopping) return;
      process.stderr.write(`dev: ${name} exited (${signal ?? code}); restarting it in 1 s\n`);
      setTimeout(() => !stopping && run(name, entry), 1_000).unref();
    });
  };
  run('worker', 'src/worker-main.ts');
  run('server', 'src/server-main.ts');
  return async () => {
    stopping = true;
    await Promise.all(
      [...children.values()].map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            child.once('exit', () => resolve());
            child.kill('SIGTERM');
          }),
      ),
    );
  };
}

async function main(): Promise<void> {
  const env: Record<string, string | undefined> = { ...process.env };
  for (const [k, v] of Object.entries(DEV_DEFAULTS)) env[k] ??= v;
  const dataDir = path.resolve(env.DEV_DATA_DIR ?? path.join(REPO_ROOT, '.data'));
  fs.mkdirSync(dataDir, { recursive: true });
  const stops: (() => Promise<void>)[] = [];
  const synchronous = parseSqliteSynchronous(env.DEV_SQLITE_SYNCHRONOUS, 'DEV_SQLITE_SYNCHRONOUS');

  const infra = await startInfra({
    dir: dataDir,
    ...(env.TEMPORAL_ADDRESS ? { temporalAddress: env.TEMPORAL_ADDRESS } : {}),
    ...(env.MONGODB_URI ? { mongodbUri: env.MONGODB_URI } : {}),
    temporalPort: Number(env.DEV_TEMPORAL_PORT ?? 7233),
    temporalUi: true,
    temporalUiPort: Number(env.DEV_TEMPORAL_UI_PORT ?? 8233),
    temporalDbFile: path.join(dataDir, 'temporal.db'),
    ferretdbPort: Number(env.DEV_FERRETDB_PORT ?? 27018),
    ...(synchronous ? { ferretdbSynchronous: synchronous } : {}),
  });
  env.TEMPORAL_ADDRESS = infra.temporalAddress;
  env.MONGODB_URI = infra.mongoUri;
  const uiUrl = infra.uiUrl;
  let simUrl: string | undefined;
  if (!env.GRAPH_API_BASE_URL) {
    const sim = await startMetaSimulator({ port: Number(env.DEV_META_SIM_PORT ?? 4010), defaults: { latencyMs: 30 } });
    stops.push(() => sim.stop());
    env.GRAPH_API_BASE_URL = simUrl = sim.url;
  }

  let config;
  try {
    config = loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`dev: ${err.message}\n`);
      await infra.stop();
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger(config.logLevel, 'coexist-relay');
  const banner = (apiUrl: string) =>
    [
      '',
      `coexist-relay dev stack is up${env.DEV_SPLIT === '1' ? ' (worker and API as separate processes)' : ''}`,
      `  API              ${apiUrl}   (send key: ${config.sendApiKeys[0]?.key}, ops key: ${config.opsApiKeys[0]})`,
      `  Meta webhook     ${apiUrl}${config.webhook.path}   (app secret: ${config.webhook.appSecrets[0]}, verify token: ${config.webhook.verifyToken})`,
      `  Temporal         ${config.temporal.address}${uiUrl ? `   UI: ${uiUrl}` : ''}`,
      `  MongoDB          ${redactUri(config.mongo.uri)}${config.mongo.db}`,
      `  Cloud API        ${redactUri(config.graph.baseUrl)}${simUrl ? '   (the Meta simulator: npm run meta-sim -- --help)' : ''}`,
      `  data             ${dataDir}`,
      'Ctrl-C stops everything.',
      '',
    ].join('\n') + '\n';

  if (env.DEV_SPLIT === '1') {
    const stopChildren = startSplit(env, env.DEV_HEAP_MB ?? DEFAULT_HEAP_MB);
    onShutdown(logger, async () => {
      process.stdout.write('\nstopping…\n');
      await stopChildren();
      for (const s of stops) await s();
      await infra.stop();
      process.stdout.write('stopped\n');
    });
    process.stdout.write(banner(`http://${config.host}:${config.port}`));
    return;
  }

  installTemporalRuntime(config);
  const stopTracing = await startTracing(config, 'dev');
  const rt = await connectRuntime(config);
  // One process: the server's /metrics shows what the worker records too.
  const metrics = createRelayMetrics();
  const relay = startOutboxRelay({ c: rt.c, launch: rt.launch, logger });
  const forwarder = startForwarder({
    c: rt.c,
    logger,
    forward: config.forward,
    reportBacklog: (r) => reportForwardBacklog(rt.launch, r),
  });
  const { worker, connection, services } = await startWorkerProcess({ config, logger, rt, metrics });
  // Set once the server listens; a worker failing before that stops the stack without it.
  const started: { http?: Awaited<ReturnType<typeof startServer>> } = {};
  // Ctrl-C reaches every process of the terminal's group: the SDK starts the worker's shutdown
  // itself (requestShutdown tolerates that) and the Temporal and FerretDB children get the signal
  // too (stopping them again is harmless). onShutdown exits 0 once this resolves.
  const stopAll = async (): Promise<void> => {
    process.stdout.write('\nstopping…\n');
    requestShutdown(worker);
    const { http } = started;
    if (http) {
      const closed = http.close();
      await withTimeout(closed, 5_000, 'closing the HTTP server').catch(async () => {
        http.closeAllConnections();
        await closed;
      });
    }
    await relay.stop();
    await forwarder.stop();
    await running;
    await services.stop();
    await connection.close();
    await rt.close();
    await stopTracing();
    for (const s of stops) await s();
    await infra.stop();
    process.stdout.write('stopped\n');
    if (workerFailed) process.exit(1);
  };
  let stopping: Promise<void> | undefined;
  const stopOnce = (): Promise<void> => (stopping ??= stopAll());
  // Settles once the worker has drained; a worker failure (fatal error) stops the whole stack.
  let workerFailed = false;
  const running = worker.run().catch((err: unknown) => {
    logger.error({ err }, 'worker failed');
    workerFailed = true;
    void stopOnce().finally(() => process.exit(1));
  });
  onShutdown(logger, stopOnce);
  const http = (started.http = await startServer({
    metrics,
    config,
    logger,
    c: rt.c,
    launch: rt.launch,
    readiness: rt.readiness,
    outbox: relay,
  }));

  process.stdout.write(banner(http.url));
}

main().catch((err: unknown) => {
  process.stderr.write(`dev: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
