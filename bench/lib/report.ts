/** Small helpers shared by the benchmarks: flags, statistics, the results table and the JSON file. */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { CommandFailedEvent, CommandStartedEvent, CommandSucceededEvent, MongoClient } from 'mongodb';

export const RESULTS_DIR = path.resolve(__dirname, '..', 'results');

type FlagSpec = Record<string, { type: 'string' | 'boolean'; default?: string | boolean; help: string }>;

/**
 * Parses `process.argv` against `spec`; `--help` prints the flags and exits. Unknown flags are an
 * error (a typo must not silently run the default benchmark).
 */
export function flags<S extends FlagSpec>(
  name: string,
  spec: S,
  argv = process.argv.slice(2),
): { [K in keyof S]: S[K]['type'] extends 'boolean' ? boolean : string } {
  const options: Record<string, { type: 'string' | 'boolean'; default?: string | boolean }> = {
    help: { type: 'boolean' },
  };
  for (const [k, v] of Object.entries(spec))
    options[k] = { type: v.type, ...(v.default !== undefined ? { default: v.default } : {}) };
  let values: Record<string, unknown>;
  try {
    values = parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values;
  } catch (err) {
    process.stderr.write(`${name}: ${(err as Error).message}\n\n${usage(name, spec)}`);
    process.exit(2);
  }
  if (values.help) {
    process.stdout.write(usage(name, spec));
    process.exit(0);
  }
  return values as never;
}

function usage(name: string, spec: FlagSpec): string {
  const lines = Object.entries(spec).map(
    ([k, v]) =>
      `  --${k}${v.type === 'string' ? ' <v>' : ''}`.padEnd(28) +
      `${v.help}${v.default !== undefined && v.default !== false ? ` (default ${String(v.default)})` : ''}`,
  );
  return `Usage: tsx bench/${name}.ts [flags]\n\n${lines.join('\n')}\n`;
}

/** A positive integer flag value. */
export function int(name: string, value: string, min = 1): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) {
    process.stderr.write(`--${name} must be an integer ≥ ${min}, got ${JSON.stringify(value)}\n`);
    process.exit(2);
  }
  return n;
}

/** Nearest-rank percentile of an unsorted list (0 when empty). */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

export const median = (values: readonly number[]): number => percentile(values, 50);
export const mean = (values: readonly number[]): number =>
  values.length === 0 ? 0 : values.reduce((a, b) => a + b, 0) / values.length;

/**
 * Most events in any window `[t, t + windowMs)` (a sliding window over the sorted times): the
 * number a per-second cap is judged by.
 */
export function maxInWindow(times: readonly number[], windowMs = 1000): { count: number; startAt: number } {
  const sorted = [...times].sort((a, b) => a - b);
  let best = 0;
  let startAt = sorted[0] ?? 0;
  let lo = 0;
  for (let hi = 0; hi < sorted.length; hi++) {
    while (sorted[hi]! - sorted[lo]! >= windowMs) lo++;
    if (hi - lo + 1 > best) {
      best = hi - lo + 1;
      startAt = sorted[lo]!;
    }
  }
  return { count: best, startAt };
}

/** Fixed-width text table (first column left-aligned, the rest right-aligned). */
export function table(headers: string[], rows: (string | number)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string =>
    r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(cells[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join('\n');
}

export const fmt = (n: number, digits = 1): string => (Number.isFinite(n) ? n.toFixed(digits) : String(n));
export const pct = (ratio: number): string => `${(ratio * 100).toFixed(1)}%`;

/** What the numbers were measured on. */
export function machine(): Record<string, unknown> {
  return {
    host: os.hostname(),
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model,
    memGb: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
    loadavg: os.loadavg().map((x) => Number(x.toFixed(2))),
  };
}

/** The checked-out commit and whether files outside bench/ differ from it (read-only git calls). */
function gitState(): { commit?: string; dirtyOutsideBench?: boolean } {
  try {
    const cwd = path.resolve(__dirname, '..', '..');
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd, encoding: 'utf8' }).trim();
    const status = execFileSync('git', ['status', '--porcelain'], { cwd, encoding: 'utf8' });
    const dirtyOutsideBench = status.split('\n').some((l) => l.trim() !== '' && !l.slice(3).startsWith('bench/'));
    return { commit, dirtyOutsideBench };
  } catch {
    return {};
  }
}

/** The code state when this process started (the code under test was loaded then). */
export const GIT_AT_START = gitState();

/** Writes `bench/results/<name>-<timestamp>.json`; returns its path. */
export function writeResults(name: string, data: Record<string, unknown>): string {
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const file = path.join(RESULTS_DIR, `${name}-${stamp}.json`);
  fs.writeFileSync(
    file,
    JSON.stringify(
      {
        benchmark: name,
        at: new Date().toISOString(),
        machine: machine(),
        git: { atStart: GIT_AT_START, atEnd: gitState() },
        ...data,
      },
      null,
      2,
    ) + '\n',
  );
  return file;
}

/** Runs `fn` over `items` with at most `concurrency` calls in flight; results in input order. */
export async function pool<T, R>(
  items: readonly T[],
  concurrency: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(concurrency, items.length) }, async () => {
    for (;;) {
      const i = next++;
      if (i >= items.length) return;
      results[i] = await fn(items[i]!, i);
    }
  });
  await Promise.all(workers);
  return results;
}

const cleanups: (() => Promise<void>)[] = [];

/** Registers something to stop on Ctrl-C / SIGTERM (last registered runs first); returns the unregister function. */
export function onInterrupt(fn: () => Promise<void>): () => void {
  cleanups.push(fn);
  return () => {
    const i = cleanups.indexOf(fn);
    if (i >= 0) cleanups.splice(i, 1);
  };
}

/**
 * Runs `main` and exits (0, or 1 with the error). Ctrl-C / SIGTERM run the registered cleanups
 * (servers stopped, temp dir removed) before exiting with 130; a second signal exits at once.
 */
export function runMain(main: () => Promise<void>): void {
  let interrupted = false;
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      if (interrupted) process.exit(130);
      interrupted = true;
      process.stderr.write(`[bench] ${sig}: stopping the servers…\n`);
      void (async () => {
        for (const fn of [...cleanups].reverse())
          await Promise.race([fn().catch(() => undefined), new Promise((r) => setTimeout(r, 10_000))]);
        process.exit(130);
      })();
    });
  }
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`[bench] failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}

/** CPU seconds (user + system) each process has used so far, from /proc (Linux; 0 elsewhere). */
export function cpuSeconds(pids: Record<string, number | undefined>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, pid] of Object.entries(pids)) {
    if (pid === undefined) continue;
    try {
      // Fields after the `(comm)`: state is field 3; utime and stime are fields 14 and 15 (clock ticks, 100/s).
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out[name] = (Number(fields[11]) + Number(fields[12])) / 100;
    } catch {
      out[name] = 0;
    }
  }
  return out;
}

/** Cores each process used between two `cpuSeconds` snapshots `wallSeconds` apart. */
export function coresUsed(
  before: Record<string, number>,
  after: Record<string, number>,
  wallSeconds: number,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const name of Object.keys(after))
    out[name] = Number((((after[name] ?? 0) - (before[name] ?? 0)) / wallSeconds).toFixed(2));
  return out;
}

/**
 * Turns on command monitoring (`commandStarted` / `commandSucceeded` / `commandFailed` events) of
 * a client that was created without it: the flag applies to new connections, so the client
 * reconnects. Call it while the client is quiet (an operation in flight may fail). A no-op once on.
 */
export async function enableCommandMonitoring(client: MongoClient): Promise<void> {
  const flag = client as unknown as { monitorCommands: boolean };
  if (flag.monitorCommands) return;
  flag.monitorCommands = true;
  await client.close();
  await client.connect();
}

/**
 * Per-command timings of a MongoClient (command monitoring), grouped as `<command> <collection>`.
 * Command monitoring is fixed per connection when it opens, so this reconnects the client: call it
 * before anything else uses the client.
 */
export async function traceCommands(client: MongoClient) {
  const started = new Map<number, { key: string; at: number }>();
  const durations = new Map<string, number[]>();
  let on = false;
  const onStart = (e: CommandStartedEvent): void => {
    if (!on) return;
    const coll = e.command[e.commandName];
    started.set(e.requestId, {
      key: `${e.commandName}${typeof coll === 'string' ? ` ${coll}` : ''}`,
      at: performance.now(),
    });
  };
  const onEnd = (e: CommandSucceededEvent | CommandFailedEvent): void => {
    const s = started.get(e.requestId);
    if (!s) return;
    started.delete(e.requestId);
    const list = durations.get(s.key) ?? [];
    list.push(performance.now() - s.at);
    durations.set(s.key, list);
  };
  await enableCommandMonitoring(client);
  client.on('commandStarted', onStart);
  client.on('commandSucceeded', onEnd);
  client.on('commandFailed', onEnd);
  return {
    start(): void {
      durations.clear();
      on = true;
    },
    /** Stops recording; returns count, p50, max and total ms per command, busiest first. */
    stop(): Record<string, { count: number; p50Ms: number; maxMs: number; totalMs: number }> {
      on = false;
      const out: Record<string, { count: number; p50Ms: number; maxMs: number; totalMs: number }> = {};
      const rows = [...durations].sort((a, b) => b[1].reduce((x, y) => x + y, 0) - a[1].reduce((x, y) => x + y, 0));
      for (const [key, list] of rows) {
        out[key] = {
          count: list.length,
          p50Ms: Number(percentile(list, 50).toFixed(1)),
          maxMs: Number(Math.max(...list).toFixed(1)),
          totalMs: Math.round(list.reduce((x, y) => x + y, 0)),
        };
      }
      return out;
    },
  };
}

/** A V8 CPU profile of this process while `fn` runs (node:inspector), written to `file`, and its
 *  heaviest functions by self time (ms), merged by name and location. */
export async function cpuProfile<T>(
  file: string,
  fn: () => Promise<T>,
): Promise<{ result: T; top: { fn: string; at: string; selfMs: number }[]; totalMs: number }> {
  const { Session } = await import('node:inspector');
  const session = new Session();
  session.connect();
  const post = (method: string, params?: object): Promise<unknown> =>
    new Promise((resolve, reject) =>
      session.post(method, params ?? {}, (err, res) => (err ? reject(err) : resolve(res))),
    );
  await post('Profiler.enable');
  await post('Profiler.start');
  const stop = async (): Promise<V8Profile> => {
    const { profile } = (await post('Profiler.stop')) as { profile: V8Profile };
    session.disconnect();
    return profile;
  };
  const result = await fn().catch(async (err: unknown) => {
    await stop();
    throw err;
  });
  const profile = await stop();
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(profile));
  const self = new Map<number, number>();
  const deltas = profile.timeDeltas ?? [];
  profile.samples?.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (deltas[i] ?? 0) / 1000));
  const merged = new Map<string, { fn: string; at: string; selfMs: number }>();
  let totalMs = 0;
  for (const node of profile.nodes) {
    const ms = self.get(node.id) ?? 0;
    totalMs += ms;
    const f = node.callFrame;
    const at = f.url ? `${f.url.replace(/^.*node_modules\//, '')}:${f.lineNumber + 1}` : '';
    const key = `${f.functionName}|${at}`;
    const row = merged.get(key) ?? { fn: f.functionName || '(anonymous)', at, selfMs: 0 };
    row.selfMs += ms;
    merged.set(key, row);
  }
  const top = [...merged.values()].sort((a, b) => b.selfMs - a.selfMs).slice(0, 25);
  return { result, top, totalMs };
}

interface V8Profile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
  samples?: number[];
  timeDeltas?: number[];
}
