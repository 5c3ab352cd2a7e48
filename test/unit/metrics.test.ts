import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import { MetricsRegistry, createRelayMetrics, serveMetrics } from '../../src/http/metrics';
import { createKeyRateLimit } from '../../src/http/ratelimit';
import { errorMiddleware } from '../../src/http/errors';
import { createLogger } from '../../src/logger';

describe('the Prometheus registry', () => {
  it('renders counters, gauges and histograms in the text format, with escaped labels', async () => {
    const r = new MetricsRegistry();
    const c = r.counter('coexist_relay_things_total', 'Things.', ['kind']);
    c.inc({ kind: 'a' });
    c.inc({ kind: 'a' }, 2);
    c.inc({ kind: 'say "hi"\\\n' });
    const g = r.gauge('coexist_relay_level', 'A level.');
    g.set(undefined, 1.5);
    const h = r.histogram('coexist_relay_wait_seconds', 'Waits.', [0.1, 1], ['code']);
    h.observe({ code: 200 }, 0.05);
    h.observe({ code: 200 }, 0.5);
    h.observe({ code: 200 }, 3);
    r.addText(() => '# TYPE coexist_relay_webhook_received_total counter\ncoexist_relay_webhook_received_total 7\n');
    const text = await r.render();
    expect(text).toContain('# HELP coexist_relay_things_total Things.\n# TYPE coexist_relay_things_total counter\n');
    expect(text).toContain('coexist_relay_things_total{kind="a"} 3\n');
    expect(text).toContain('coexist_relay_things_total{kind="say \\"hi\\"\\\\\\n"} 1\n');
    expect(text).toContain('# TYPE coexist_relay_level gauge\ncoexist_relay_level 1.5\n');
    expect(text).toContain(
      [
        'coexist_relay_wait_seconds_bucket{code="200",le="0.1"} 1',
        'coexist_relay_wait_seconds_bucket{code="200",le="1"} 2',
        'coexist_relay_wait_seconds_bucket{code="200",le="+Inf"} 3',
        'coexist_relay_wait_seconds_sum{code="200"} 3.55',
        'coexist_relay_wait_seconds_count{code="200"} 3',
      ].join('\n'),
    );
    expect(text).toContain('coexist_relay_webhook_received_total 7\n');
    expect(() => r.counter('other_total', 'x')).toThrow(/coexist_relay_/);
  });

  it('leaves out the gauges of a collector that fails and counts the failure', async () => {
    const r = new MetricsRegistry();
    const ok = r.gauge('coexist_relay_ok', 'ok');
    const bad = r.gauge('coexist_relay_bad', 'bad');
    r.collector([ok], async () => ok.set(undefined, 1));
    r.collector([bad], () => Promise.reject(new Error('store down')));
    const text = await r.render();
    expect(text).toContain('coexist_relay_ok 1\n');
    expect(text).not.toContain('coexist_relay_bad');
    expect(text).toContain('coexist_relay_metrics_collect_errors_total 1\n');
  });

  it('serves /metrics on its own listener (the worker’s WORKER_METRICS_PORT) and 404 elsewhere', async () => {
    const m = createRelayMetrics();
    m.sends.inc({ outcome: 'sent', error_code: 'none' }, 4);
    const server = await serveMetrics(m.registry, 0, '127.0.0.1');
    try {
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const res = await fetch(`${base}/metrics`);
      expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4');
      expect(await res.text()).toContain('coexist_relay_sends_total{outcome="sent",error_code="none"} 4\n');
      expect((await fetch(`${base}/other`)).status).toBe(404);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});

describe('the per-key rate limit', () => {
  it('lets a burst through, then answers 429 rate_limited with Retry-After until tokens refill, per key', async () => {
    let now = 0;
    const limited: string[] = [];
    const app = new Koa();
    app.use(errorMiddleware({ logger: createLogger('silent') }));
    app.use(async (ctx, next) => {
      ctx.state.apiKeyId = ctx.get('x-key');
      await next();
    });
    app.use(createKeyRateLimit({ ratePerSec: 2, burst: 3, now: () => now, onLimited: (k) => limited.push(k) }));
    app.use((ctx) => {
      ctx.body = { ok: true };
    });
    const server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    const hit = (key: string) => fetch(url, { headers: { 'x-key': key } });
    try {
      for (let i = 0; i < 3; i++) expect((await hit('a')).status).toBe(200);
      const refused = await hit('a');
      expect(refused.status).toBe(429);
      expect(refused.headers.get('retry-after')).toBe('1');
      expect(await refused.json()).toMatchObject({ error: { code: 'rate_limited' } });
      expect((await hit('b')).status).toBe(200); // another key has its own bucket
      now += 500; // one token back at 2/s
      expect((await hit('a')).status).toBe(200);
      expect((await hit('a')).status).toBe(429);
      expect(limited).toEqual(['a', 'a']);
    } finally {
      server.close();
    }
  });
});
