import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { spawnWatched } from '../support/child';
import { Worker } from '@temporalio/worker';

/**
 * The production build (`npm run build`, what the image runs): the compiled worker loads the
 * prebuilt workflow bundle, that bundle replays the committed histories, and the compiled entry
 * points start with plain `node` (no tsx, no TypeScript) and exit 0 on SIGTERM. dist/ is rebuilt
 * once here unless it is newer than every source it is built from.
 */
const ROOT = path.join(__dirname, '../..');
const DIST = path.join(ROOT, 'dist');
const BUNDLE = path.join(DIST, 'workflow-bundle.js');
const TRACING_BUNDLE = path.join(DIST, 'workflow-bundle-tracing.js');
const FIXTURES = path.join(__dirname, '../fixtures/histories');
const BUILD_INPUTS = ['src', 'tools/build-workflows.ts', 'tsconfig.json', 'tsconfig.build.json', 'package-lock.json'];

function newestMtime(p: string): number {
  const st = fs.statSync(p);
  if (!st.isDirectory()) return st.mtimeMs;
  return Math.max(st.mtimeMs, ...fs.readdirSync(p).map((name) => newestMtime(path.join(p, name))));
}

function distIsFresh(): boolean {
  const outputs = [
    BUNDLE,
    TRACING_BUNDLE,
    path.join(DIST, 'src/worker-main.js'),
    path.join(DIST, 'src/server-main.js'),
  ];
  if (!outputs.every((f) => fs.existsSync(f))) return false;
  const built = Math.min(...outputs.map((f) => fs.statSync(f).mtimeMs));
  return BUILD_INPUTS.every((p) => newestMtime(path.join(ROOT, p)) < built);
}

/** Runs a compiled entry point until `ready` shows in its output, then SIGTERMs it. */
async function runUntilReadyThenStop(
  script: string,
  env: Record<string, string>,
  ready: RegExp,
  whileUp?: (output: string) => Promise<void>,
): Promise<{ code: number | null; signal: NodeJS.Signals | null; output: string }> {
  const run = spawnWatched(process.execPath, [script], {
    cwd: ROOT,
    // A plain environment: nothing from Jest (no loaders), only what the process needs.
    env: { PATH: process.env.PATH ?? '', ...env },
  });
  try {
    await run.ready(ready, 60_000);
    await whileUp?.(run.output());
  } finally {
    run.child.kill('SIGTERM');
  }
  return { ...(await run.exited), output: run.output() };
}

describe('the production build', () => {
  // Compiled code is loaded from dist/ at run time, after the build.
  let compiledWorker: {
    prebuiltBundlePath(config: { workflowBundlePath?: string; tracing?: object }): string | undefined;
    bundleHasTracing(code: string): boolean;
  };
  const env = (): Record<string, string> => ({
    TEMPORAL_ADDRESS: process.env.TEMPORAL_ADDRESS ?? '',
    TEMPORAL_NAMESPACE: process.env.TEMPORAL_NAMESPACE ?? 'default',
    MONGODB_URI: process.env.MONGODB_URI ?? '',
    MONGODB_DB: 'build_test',
    // Its own task queue: this worker must not take other tests' tasks.
    TEMPORAL_TASK_QUEUE: `build-test-${randomBytes(4).toString('hex')}`,
    META_APP_SECRET: 'build-secret',
    META_VERIFY_TOKEN: 'build-verify',
    OPS_API_KEYS: 'build-ops',
    SEND_API_KEYS: 'build-send',
    GRAPH_API_TOKEN: 'build-token',
    LOG_LEVEL: 'info',
  });

  beforeAll(async () => {
    if (!distIsFresh()) execFileSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'pipe' });
    compiledWorker = (await import(path.join(DIST, 'src/worker.js'))) as typeof compiledWorker;
  }, 180_000);

  it('has the compiled worker load the workflow bundle built next to it (the tracing one with tracing on), or WORKFLOW_BUNDLE_PATH', () => {
    expect(compiledWorker.prebuiltBundlePath({})).toBe(BUNDLE);
    const tracing = { endpoint: 'http://127.0.0.1:4318', serviceName: 'coexist-relay' };
    expect(compiledWorker.prebuiltBundlePath({ tracing })).toBe(TRACING_BUNDLE);
    expect(compiledWorker.prebuiltBundlePath({ workflowBundlePath: FIXTURES })).toBe(FIXTURES);
    expect(compiledWorker.bundleHasTracing(fs.readFileSync(TRACING_BUNDLE, 'utf8'))).toBe(true);
    expect(compiledWorker.bundleHasTracing(fs.readFileSync(BUNDLE, 'utf8'))).toBe(false);
  });

  it.each([
    ['prebuilt bundle', BUNDLE],
    ['prebuilt tracing bundle', TRACING_BUNDLE],
  ])('replays every committed history with the %s', async (_, codePath) => {
    const files = fs.readdirSync(FIXTURES).filter((f) => f.endsWith('.json'));
    expect(files.length).toBeGreaterThan(0);
    const histories = files.map((file) => ({
      workflowId: file.replace(/\.json$/, ''),
      // The Temporal JSON format; the replayer converts it.
      history: JSON.parse(fs.readFileSync(path.join(FIXTURES, file), 'utf8')) as unknown,
    }));
    const failures: string[] = [];
    let replayed = 0;
    // The tracing bundle's workflow spans go to a sink; replays call none, but it must exist.
    const sinks = { exporter: { export: { fn: () => undefined, callDuringReplay: false } } };
    for await (const result of Worker.runReplayHistories({ workflowBundle: { codePath }, sinks }, histories)) {
      replayed++;
      if (result.error) failures.push(`${result.workflowId}: ${String(result.error)}`);
    }
    expect(failures).toEqual([]);
    expect(replayed).toBe(files.length);
  });

  it('runs the compiled worker with plain node on the prebuilt bundle; SIGTERM stops it with exit 0', async () => {
    const run = await runUntilReadyThenStop('dist/src/worker-main.js', env(), /"msg":"worker running"/);
    expect(run.output).toContain(`"workflowCode":"${BUNDLE}"`);
    expect(run.output).not.toMatch(/Error|\n\s+at /);
    expect(run).toMatchObject({ code: 0, signal: null });
  });

  it('runs the compiled worker with tracing on (OTEL_EXPORTER_OTLP_ENDPOINT) on the prebuilt tracing bundle', async () => {
    const run = await runUntilReadyThenStop(
      'dist/src/worker-main.js',
      { ...env(), OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' },
      /"msg":"worker running"/,
    );
    expect(run.output).toContain(`"workflowCode":"${TRACING_BUNDLE}"`);
    expect(run.output).toContain('"tracing":"http://127.0.0.1:4318"');
    expect(run.output).not.toMatch(/Error|\n\s+at |no tracing interceptors/);
    expect(run).toMatchObject({ code: 0, signal: null });
  });

  it('runs the compiled server with plain node: /healthz answers, SIGTERM stops it with exit 0', async () => {
    let health: number | undefined;
    const run = await runUntilReadyThenStop(
      'dist/src/server-main.js',
      { ...env(), PORT: '0' },
      /"msg":"server listening"/,
      async (output) => {
        const url = /"url":"([^"]+)"/.exec(output)?.[1];
        health = (await fetch(`${url}/healthz`)).status;
      },
    );
    expect(health).toBe(200);
    expect(run.output).not.toMatch(/Error|\n\s+at /);
    expect(run).toMatchObject({ code: 0, signal: null });
  });
});
