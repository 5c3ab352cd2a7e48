import type { Server } from 'node:http';
import { createApp, type AppDeps } from './http/app';

/** Starts the Koa app on the configured host and port; resolves once it listens. */
export async function startServer(deps: AppDeps): Promise<{ server: Server; url: string; close(): Promise<void> }> {
  const app = createApp(deps);
  const server: Server = await new Promise((resolve, reject) => {
    const s = app.listen(deps.config.port, deps.config.host, () => resolve(s));
    s.once('error', reject);
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : deps.config.port;
  // Meta and senders keep connections alive; let idle ones go before the load balancer's timeout.
  server.keepAliveTimeout = 65_000;
  return {
    server,
    url: `http://${deps.config.host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}
