import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { Gauge } from 'prom-client';
import Koa from 'koa';
import { addWebhookCounters, createRelayMetrics, serveMetrics } from '../../src/http/metrics';
import { createCounters } from '../../src/http/webhook';
import { detachedServerApp } from '../support/server-app';
import { createKeyRateLimit } from '../../src/http/ratelimit';
import { errorMiddleware } from '../../src/http/errors';
import { createLogger } from '../../src/logger';

describe('the Prometheus metrics', () => {
  it('renders the service metrics in the text format, with their help, type and labels', async () => {
    const m = createRelayMetrics();
    m.sends.inc({ outcome: 'sent', error_code: 'none' });
    m.sends.inc({ outcome: 'sent', error_code: 'none' }, 2);
    m.sends.inc({ outcome: 'failed', error_code: 131026 });
    m.offboardedDuration.observe({ to: 'draining' }, 30);
    m.offboardedDuration.observe({ to: 'draining' }, 400);
    m.offboardedDuration.observe({ to: 'draining' }, 8 * 86_400);
    const counters = createCounters();
    counters.accepted = 7;
    counters.byAccountUpdateEvent.set('say "hi"\\\n', 2);
    addWebhookCounters(m, counters);
    const text = await m.render();
    expect(text).toContain(
      "# HELP coexist_relay_sends_total Messages settled, by outcome (sent failed expired cancelled) and Meta's error code (none when absent).\n# TYPE coexist_relay_sends_total counter\n",
    );
    expect(text).toContain('coexist_relay_sends_total{outcome="sent",error_code="none"} 3\n');
    expect(text).toContain('coexist_relay_sends_total{outcome="failed",error_code="131026"} 1\n');
    expect(text).toContain('# TYPE coexist_relay_offboarded_duration_seconds histogram\n');
    expect(text).toContain(
      [
        'coexist_relay_offboarded_duration_seconds_bucket{le="60",to="draining"} 1',
        'coexist_relay_offboarded_duration_seconds_bucket{le="300",to="draining"} 1',
        'coexist_relay_offboarded_duration_seconds_bucket{le="600",to="draining"} 2',
      ].join('\n'),
    );
    expect(text).toContain(
      [
        'coexist_relay_offboarded_duration_seconds_bucket{le="604800",to="draining"} 2',
        'coexist_relay_offboarded_duration_seconds_bucket{le="+Inf",to="draining"} 3',
        'coexist_relay_offboarded_duration_seconds_sum{to="draining"} 691630',
        'coexist_relay_offboarded_duration_seconds_count{to="draining"} 3',
      ].join('\n'),
    );
    // The webhook's plain counters, read at the scrape; label values escaped.
    expect(text).toContain(
      '# TYPE coexist_relay_webhook_accepted_total counter\ncoexist_relay_webhook_accepted_total 7\n',
    );
    expect(text).toContain('coexist_relay_webhook_account_updates_total{event="say \\"hi\\"\\\\\\n"} 2\n');
    counters.accepted++;
    expect(await m.render()).toContain('coexist_relay_webhook_accepted_total 8\n');
  });

  it('leaves out the gauges of a store read that fails and counts the failure in the same scrape', async () => {
    const m = createRelayMetrics();
    const ok = new Gauge({ name: 'coexist_relay_ok', help: 'ok', registers: [m.registry] });
    const bad = new Gauge({ name: 'coexist_relay_bad', help: 'bad', registers: [m.registry] });
    let down = false;
    m.collect([ok], async () => ok.set(1));
    m.collect([bad], () => (down ? Promise.reject(new Error('store down')) : Promise.resolve(bad.set(2))));
    expect(await m.render()).toContain('coexist_relay_bad 2\n');
    down = true;
    const text = await m.render();
    expect(text).toContain('coexist_relay_ok 1\n');
    expect(text).not.toContain('coexist_relay_bad');
    expect(text).toContain('coexist_relay_metrics_collect_errors_total 1\n');
  });

  it('serves /metrics on its own listener (the worker’s WORKER_METRICS_PORT) and 404 elsewhere', async () => {
    const m = createRelayMetrics();
    m.sends.inc({ outcome: 'sent', error_code: 'none' }, 4);
    const server = await serveMetrics(m, 0, '127.0.0.1');
    try {
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const res = await fetch(`${base}/metrics`);
      expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
      expect(await res.text()).toContain('coexist_relay_sends_total{outcome="sent",error_code="none"} 4\n');
      expect((await fetch(`${base}/other`)).status).toBe(404);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  it('has the process metrics (CPU, memory, heap, event-loop lag, GC) on the server’s and the worker’s /metrics, each of its own registry', async () => {
    const { app, metrics: serverMetrics } = detachedServerApp();
    const workerMetrics = createRelayMetrics();
    workerMetrics.sends.inc({ outcome: 'sent', error_code: 'none' }, 5);
    const api = app.listen(0, '127.0.0.1');
    await new Promise((r) => api.once('listening', r));
    const worker = await serveMetrics(workerMetrics, 0, '127.0.0.1');
    try {
      const scrape = async (s: Server) =>
        (await fetch(`http://127.0.0.1:${(s.address() as AddressInfo).port}/metrics`)).text();
      const [server, work] = [await scrape(api), await scrape(worker)];
      for (const text of [server, work]) {
        expect(text).toMatch(/^process_cpu_user_seconds_total \d/m);
        expect(text).toMatch(/^process_resident_memory_bytes \d/m);
        expect(text).toMatch(/^nodejs_heap_size_used_bytes \d/m);
        expect(text).toMatch(/^nodejs_eventloop_lag_p99_seconds \d/m);
        expect(text).toMatch(/^# TYPE nodejs_gc_duration_seconds histogram$/m);
      }
      // The server's own metrics are there too (its store gauges not: no store behind this app).
      expect(server).toMatch(/^# TYPE coexist_relay_webhook_ack_duration_seconds histogram$/m);
      expect(server).toContain('coexist_relay_metrics_collect_errors_total 4\n');
      // Nothing the worker counted shows on the server.
      expect(work).toContain('coexist_relay_sends_total{outcome="sent",error_code="none"} 5\n');
      expect(server).not.toContain('coexist_relay_sends_total{');
      expect(serverMetrics.registry).not.toBe(workerMetrics.registry);
    } finally {
      await Promise.all([api, worker].map((s) => new Promise((r) => s.close(r))));
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
