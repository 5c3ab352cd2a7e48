import { spawnSync } from 'node:child_process';
import path from 'node:path';
import {
  inSpan,
  startTracing,
  temporalClientInterceptors,
  temporalWorkerTracing,
  tracingActive,
} from '../../src/telemetry';

const ROOT = path.join(__dirname, '../..');

describe('tracing off (no OTEL_EXPORTER_OTLP_ENDPOINT)', () => {
  it('starts nothing: no interceptors, spans are plain calls, the shutdown is a no-op', async () => {
    const stop = await startTracing({}, 'server');
    expect(tracingActive()).toBe(false);
    expect(temporalClientInterceptors()).toBeUndefined();
    expect(temporalWorkerTracing()).toBeUndefined();
    const seen: unknown[] = [];
    await expect(inSpan('graph send_message', { kind: 'client' }, async (span) => (seen.push(span), 42))).resolves.toBe(
      42,
    );
    expect(seen).toEqual([undefined]);
    await expect(inSpan('x', { kind: 'internal' }, () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    await stop();
  });

  it('loads no OpenTelemetry SDK module and registers no tracer in a process running the app, the runtime, the worker and the Graph client', () => {
    // A fresh Node process (Jest's module registry is not Node's): load what the entry points load.
    const script = [
      "require('./src/http/app');",
      "require('./src/runtime');",
      "require('./src/worker');",
      "require('./src/adapters/graph/client');",
      "require('./src/telemetry');",
      'const packages = Object.keys(require.cache).map((f) => /node_modules\\/(@opentelemetry\\/[^/]+)/.exec(f)?.[1]);',
      "const provider = require('@opentelemetry/api').trace.getTracerProvider().getDelegate().constructor.name;",
      'const loaded = [...new Set(packages.filter(Boolean))];',
      'process.stdout.write(JSON.stringify({ modules: Object.keys(require.cache).length, loaded, provider }));',
    ].join('\n');
    const run = spawnSync(process.execPath, ['--import', 'tsx', '-e', script], { cwd: ROOT, encoding: 'utf8' });
    expect(run.stderr).toBe('');
    const result = JSON.parse(run.stdout) as { modules: number; loaded: string[]; provider: string };
    expect(result.modules).toBeGreaterThan(100); // the app and the SDKs did load
    // prom-client requires the API (for exemplars, which it is not asked for): a facade, no-op alone.
    expect(result.loaded.filter((p) => p !== '@opentelemetry/api')).toEqual([]);
    expect(result.provider).toBe('NoopTracerProvider');
  });
});
