/**
 * The dev launcher (`npm run dev`): the whole stack on one machine.
 *
 * - Temporal dev server (persistent SQLite file in `.data/`, Web UI on) unless TEMPORAL_ADDRESS is set;
 * - FerretDB (SQLite files in `.data/`) unless MONGODB_URI is set;
 * - the Meta Cloud API simulator unless GRAPH_API_BASE_URL is set;
 * - the worker and the HTTP server, in this process.
 *
 * Missing secrets get dev defaults (printed). Ctrl-C stops everything; a rerun finds the persisted
 * workflows and data.
 */
import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from './infra/binaries';
import { startInfra } from './stack';
import { ConfigError, loadConfig } from '../src/config';
import { createLogger } from '../src/logger';
import { onShutdown } from '../src/boot';
import { startMetaSimulator } from './meta-sim/server';
import { connectRuntime } from '../src/runtime';
import { startServer } from '../src/server';
import { createRelayMetrics } from '../src/http/metrics';
import {
  SHUTDOWN_OPTIONS,
  createWorker,
  installTemporalRuntime,
  requestShutdown,
  startWorkerServices,
} from '../src/worker';
import { withTimeout } from '../src/util/time';
import { redactUri } from '../src/util/redact';

const DEV_DEFAULTS: Record<string, string> = {
  META_APP_SECRET: 'dev-app-secret',
  META_VERIFY_TOKEN: 'dev-verify-token',
  OPS_API_KEYS: 'dev-ops-key',
  SEND_API_KEYS: 'dev-send-key',
  GRAPH_API_TOKEN: 'dev-graph-token',
};

async function main(): Promise<void> {
  const env: Record<string, string | undefined> = { ...process.env };
  for (const [k, v] of Object.entries(DEV_DEFAULTS)) env[k] ??= v;
  const dataDir = path.resolve(env.DEV_DATA_DIR ?? path.join(REPO_ROOT, '.data'));
  fs.mkdirSync(dataDir, { recursive: true });
  const stops: (() => Promise<void>)[] = [];

  const infra = await startInfra({
    dir: dataDir,
    ...(env.TEMPORAL_ADDRESS ? { temporalAddress: env.TEMPORAL_ADDRESS } : {}),
    ...(env.MONGODB_URI ? { mongodbUri: env.MONGODB_URI } : {}),
    temporalPort: Number(env.DEV_TEMPORAL_PORT ?? 7233),
    temporalUi: true,
    temporalUiPort: Number(env.DEV_TEMPORAL_UI_PORT ?? 8233),
    temporalDbFile: path.join(dataDir, 'temporal.db'),
    ferretdbPort: Number(env.DEV_FERRETDB_PORT ?? 27018),
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
  installTemporalRuntime(config);
  const rt = await connectRuntime(config);
  // One process: the server's /metrics shows what the worker records too.
  const metrics = createRelayMetrics();
  const { worker, connection } = await createWorker({
    metrics,
    config,
    logger,
    c: rt.c,
    launch: rt.launch,
    graph: rt.graph,
    workerOptions: SHUTDOWN_OPTIONS,
  });
  const services = await startWorkerServices({ config, logger, db: rt.db, c: rt.c, metrics });
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
    await running;
    await services.stop();
    await connection.close();
    await rt.close();
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
  }));

  const lines = [
    '',
    'coexist-relay dev stack is up',
    `  API              ${http.url}   (send key: ${config.sendApiKeys[0]?.key}, ops key: ${config.opsApiKeys[0]})`,
    `  Meta webhook     ${http.url}${config.webhook.path}   (app secret: ${config.webhook.appSecrets[0]}, verify token: ${config.webhook.verifyToken})`,
    `  Temporal         ${config.temporal.address}${uiUrl ? `   UI: ${uiUrl}` : ''}`,
    `  MongoDB          ${redactUri(config.mongo.uri)}${config.mongo.db}`,
    `  Cloud API        ${redactUri(config.graph.baseUrl)}${simUrl ? '   (the Meta simulator: npm run meta-sim -- --help)' : ''}`,
    `  data             ${dataDir}`,
    'Ctrl-C stops everything.',
    '',
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

main().catch((err: unknown) => {
  process.stderr.write(`dev: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
