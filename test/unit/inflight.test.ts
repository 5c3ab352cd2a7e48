import http from 'node:http';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import pino from 'pino';
import { errorMiddleware } from '../../src/http/errors';
import { inFlightLimit } from '../../src/http/inflight';
import { createLimiter } from '../../src/util/limit';

describe('inFlightLimit', () => {
  let server: http.Server;
  let url: string;
  let release: () => void = () => undefined;
  let held: Promise<void>;
  const shed: string[] = [];

  beforeEach(async () => {
    held = new Promise<void>((r) => (release = r));
    const app = new Koa();
    const logger = pino({ level: 'silent' });
    app.use(errorMiddleware({ logger }));
    app.use(
      inFlightLimit({
        name: 'webhook',
        max: 2,
        applies: (c) => c.path === '/hook',
        status: 503,
        logger,
        onShed: () => shed.push('hook'),
      }),
    );
    app.use(inFlightLimit({ name: 'api', max: 1, applies: (c) => c.path.startsWith('/v1/'), status: 429, logger }));
    app.use(async (ctx) => {
      if (ctx.query.hold === '1') await held;
      ctx.body = { ok: true };
    });
    server = http.createServer(app.callback());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterEach(async () => {
    release();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    shed.length = 0;
  });

  it('answers the webhook request past the limit 503 with Retry-After at once, and takes requests again once one ends', async () => {
    const first = [fetch(`${url}/hook?hold=1`), fetch(`${url}/hook?hold=1`)];
    await new Promise((r) => setTimeout(r, 50));
    const started = Date.now();
    const over = await fetch(`${url}/hook`, { method: 'POST', body: 'x'.repeat(100_000) });
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(over.status).toBe(503);
    expect(over.headers.get('retry-after')).toBe('1');
    expect(((await over.json()) as { error: { code: string } }).error.code).toBe('overloaded');
    expect(shed).toEqual(['hook']);
    // Other paths are not counted against it.
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    release();
    expect((await Promise.all(first)).map((r) => r.status)).toEqual([200, 200]);
    expect((await fetch(`${url}/hook`)).status).toBe(200);
  });

  it('answers the API request past its own limit 429 with Retry-After', async () => {
    const first = fetch(`${url}/v1/messages?hold=1`);
    await new Promise((r) => setTimeout(r, 50));
    const over = await fetch(`${url}/v1/wabas/1`);
    expect(over.status).toBe(429);
    expect(over.headers.get('retry-after')).toBe('1');
    expect((await fetch(`${url}/hook`)).status).toBe(200);
    release();
    expect((await first).status).toBe(200);
  });
});

describe('createLimiter', () => {
  it('never runs more than max at once, runs all, and frees a slot on rejection', async () => {
    const limiter = createLimiter(3);
    let running = 0;
    let peak = 0;
    const results = await Promise.allSettled(
      Array.from({ length: 50 }, (_, i) =>
        limiter.run(async () => {
          running++;
          peak = Math.max(peak, running);
          await new Promise((r) => setTimeout(r, i % 3));
          running--;
          if (i % 7 === 0) throw new Error(`job ${i}`);
          return i;
        }),
      ),
    );
    expect(peak).toBe(3);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(42);
    expect(limiter.active).toBe(0);
    expect(limiter.pending).toBe(0);
  });
});
