import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Received {
  id: string;
  raw: Buffer;
  headers: Record<string, string>;
}

/** A downstream endpoint that records what it receives; `down` makes it answer 503. */
export async function endpoint() {
  const got: Received[] = [];
  /** `down`: answer 503; `delayMs`: answer only after this long (recorded at arrival either way). */
  const state = { down: false, delayMs: 0 };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (state.down) return void res.writeHead(503).end();
      const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)]));
      got.push({ id: headers['webhook-id']!, raw: Buffer.concat(chunks), headers });
      if (state.delayMs > 0) setTimeout(() => res.writeHead(204).end(), state.delayMs);
      else res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    got,
    state,
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`,
    stop: () => new Promise((r) => server.close(r)),
  };
}
