/** Entry point of a worker process (`npm run worker`): config from the environment. */
import { boot, onShutdown } from './boot';
import { connectRuntime } from './runtime';
import { createWorker } from './worker';

async function main(): Promise<void> {
  const { config, logger } = boot('coexist-relay-worker');
  const rt = await connectRuntime(config);
  const { worker, connection } = await createWorker({
    config,
    logger,
    c: rt.c,
    launch: rt.launch,
    graph: rt.graph,
  });
  onShutdown(logger, async () => worker.shutdown());
  logger.info({ taskQueue: config.temporal.taskQueue, temporal: config.temporal.address }, 'worker running');
  await worker.run();
  await connection.close();
  await rt.close();
}

main().catch((err: unknown) => {
  process.stderr.write(`coexist-relay-worker: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
