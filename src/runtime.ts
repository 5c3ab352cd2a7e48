import { Client, Connection } from '@temporalio/client';
import type { MongoClient, Db } from 'mongodb';
import { graphTokenOf, type Config } from './config';
import { createGraphClient, type GraphClient } from './adapters/graph/client';
import type { LaunchDeps } from './launch-deps';
import { connectMongo, type Collections } from './adapters/store/db';
import { redactUri } from './util/redact';
import { temporalClientInterceptors } from './telemetry';

/** The long-lived clients every entry point needs, connected and checked. */
export interface Runtime {
  mongo: MongoClient;
  db: Db;
  c: Collections;
  temporal: Client;
  /** What the launchers (the only doors into Temporal) are given. */
  launch: LaunchDeps;
  /** `/readyz` checks: MongoDB and Temporal answer. */
  readiness: Record<string, () => Promise<unknown>>;
  graph: GraphClient;
  close(): Promise<void>;
}

/** The launchers' dependencies for a Temporal client and the configuration. */
export function launchDepsFor(client: Client, config: Config): LaunchDeps {
  return { client, taskQueue: config.temporal.taskQueue, lifecycle: config.lifecycle };
}

/** Readiness checks by name: a ping to MongoDB, a system-info call to Temporal. */
export function readinessChecks(db: Db, client: Client): Record<string, () => Promise<unknown>> {
  return {
    mongodb: () => db.command({ ping: 1 }),
    temporal: () => client.connection.workflowService.getSystemInfo({}),
  };
}

/**
 * Connects to MongoDB (indexes ensured) and Temporal and builds the Graph client. Throws with the
 * name of the dependency that failed.
 */
export async function connectRuntime(config: Config): Promise<Runtime> {
  const {
    client: mongo,
    db,
    c,
  } = await connectMongo(config.mongo.uri, config.mongo.db).catch((err: unknown) => {
    // The driver's message may quote the URI too: both are redacted.
    throw new Error(`cannot reach MongoDB at ${redactUri(config.mongo.uri)}: ${redactUri(String(err))}`);
  });
  const connection = await Connection.connect({ address: config.temporal.address }).catch(async (err: unknown) => {
    await mongo.close();
    throw new Error(`cannot reach Temporal at ${config.temporal.address}: ${String(err)}`);
  });
  // With tracing on (startTracing ran first), workflow starts and signals carry the trace context.
  const interceptors = temporalClientInterceptors();
  const temporal = new Client({
    connection,
    namespace: config.temporal.namespace,
    ...(interceptors ? { interceptors } : {}),
  });
  const graph = createGraphClient({
    baseUrl: config.graph.baseUrl,
    version: config.graph.version,
    timeoutMs: config.graph.timeoutMs,
    tokenFor: (wabaId) => graphTokenOf(config.graph, wabaId).token,
  });
  return {
    mongo,
    db,
    c,
    temporal,
    launch: launchDepsFor(temporal, config),
    readiness: readinessChecks(db, temporal),
    graph,
    async close() {
      await connection.close();
      await mongo.close();
    },
  };
}
