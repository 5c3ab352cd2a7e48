/**
 * Entry point of the HTTP server process (`npm run server` from source, `npm run start:server` /
 * `node dist/src/server-main.js` compiled): config from the environment.
 *
 * It also runs the outbox relay (src/lifecycle/outbox-relay.ts), which hands the recorded webhook
 * deliveries to Temporal. SIGINT/SIGTERM: the listener stops accepting, requests in flight get
 * `CLOSE_GRACE_MS` to finish (then their connections are cut), the relay finishes its pass, the
 * clients close, the last spans are flushed (with tracing on) and the process exits 0.
 */
import { boot, onShutdown } from './boot';
import { connectRuntime } from './runtime';
import { startServer } from './server';
import { startOutboxRelay } from './lifecycle/outbox-relay';
import { startForwarder } from './relay/forwarder';
import { reportForwardBacklog } from './relay/launch';
import { withTimeout } from './util/time';
import { startTracing } from './telemetry';

/** How long open requests may run after a shutdown signal. Under docker-compose's 10 s default. */
const CLOSE_GRACE_MS = 5_000;

async function main(): Promise<void> {
  const { config, logger } = boot('coexist-relay-server');
  // Before the Temporal client exists: it picks up the tracing interceptor (a no-op when off).
  const stopTracing = await startTracing(config, 'server');
  const rt = await connectRuntime(config);
  // Hands recorded webhook deliveries to Temporal; safe to run in every server process.
  const outbox = startOutboxRelay({ c: rt.c, launch: rt.launch, logger });
  // Forwards recorded deliveries to FORWARD_TARGETS; also safe in every server process.
  const forwarder = startForwarder({
    c: rt.c,
    logger,
    forward: config.forward,
    reportBacklog: (r) => reportForwardBacklog(rt.launch, r),
  });
  const http = await startServer({ config, logger, c: rt.c, launch: rt.launch, readiness: rt.readiness, outbox });
  logger.info(
    {
      url: http.url,
      webhook: http.url + config.webhook.path,
      ...(http.internal ? { internal: http.internal.url } : {}),
      ...(config.tracing ? { tracing: config.tracing.endpoint } : {}),
    },
    'server listening',
  );
  onShutdown(logger, async () => {
    const closed = http.close();
    await withTimeout(closed, CLOSE_GRACE_MS, 'closing the HTTP server').catch(async () => {
      logger.warn({ graceMs: CLOSE_GRACE_MS }, 'requests still open after the grace time: closing their connections');
      http.closeAllConnections();
      await closed;
    });
    await outbox.stop();
    await forwarder.stop();
    await rt.close();
    await stopTracing();
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`coexist-relay-server: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
