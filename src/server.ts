import type { Server } from 'node:http';
import type Koa from 'koa';
import { createApps, type AppDeps } from './http/app';
import type { RelayMetrics } from './http/metrics';

/** A listening HTTP server: its URL and a close that lets open requests finish. */
export interface Listener {
  server: Server;
  url: string;
  close(): Promise<void>;
}

/** Listens with `handler` on `host:port` (0: a free port); resolves once it listens. */
export async function listen(app: Koa, port: number, host: string): Promise<Listener> {
  const server: Server = await new Promise((resolve, reject) => {
    const s = app.listen(port, host, () => resolve(s));
    s.once('error', reject);
  });
  const addr = server.address();
  const actual = typeof addr === 'object' && addr ? addr.port : port;
  // Meta and senders keep connections alive; let idle ones go before the load balancer's timeout.
  server.keepAliveTimeout = 65_000;
  return {
    server,
    url: `http://${host}:${actual}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}

/**
 * Starts the Koa app on the configured host and port, and, when `INTERNAL_PORT` is set, the
 * internal app (ops API, metrics, readiness, OpenAPI) on `INTERNAL_HOST:INTERNAL_PORT`; resolves
 * once both listen. `close()` closes both.
 */
export async function startServer(
  deps: AppDeps,
): Promise<Listener & { internal?: Listener; metrics: RelayMetrics; closeAllConnections(): void }> {
  const apps = createApps(deps);
  const main = await listen(apps.main, deps.config.port, deps.config.host);
  let internal: Listener | undefined;
  if (apps.internal && deps.config.internal) {
    internal = await listen(apps.internal, deps.config.internal.port, deps.config.internal.host).catch(
      async (err: unknown) => {
        await main.close();
        throw err;
      },
    );
  }
  return {
    ...main,
    ...(internal ? { internal } : {}),
    metrics: apps.metrics,
    close: async () => {
      await Promise.all([main.close(), internal?.close()]);
    },
    closeAllConnections() {
      main.server.closeAllConnections();
      internal?.server.closeAllConnections();
    },
  };
}
