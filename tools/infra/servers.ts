/**
 * Starts the cached server binaries (see binaries.ts) as child processes: a Temporal dev server
 * (`temporal server start-dev`) and FerretDB (the `infra/ferretdb` wrapper). Used by the dev
 * launcher and the integration tests' global setup.
 *
 * - Ports: free loopback ports unless given (listen on port 0, read it, close; the dev server's
 *   own HTTP and metrics ports are picked by itself).
 * - Logs: each child's stdout+stderr go to a file in `logDir`; a failed start shows its tail.
 * - Ready: Temporal when a client connects, `getSystemInfo` and `describeNamespace` answer and
 *   every requested search attribute is listed; FerretDB when a TCP connect and a MongoDB `ping`
 *   succeed.
 * - Cleanup: `stop()` sends SIGTERM, then SIGKILL after 5 s. Children are also stopped when this
 *   process exits (`exit` hook) or gets SIGINT/SIGTERM/SIGHUP and nobody else handles it. They
 *   stay in our process group, so Ctrl-C in a terminal reaches them directly too. Only a SIGKILL
 *   of this process can orphan them (nothing in Node can prevent that).
 *
 * Search attributes and a reused database file: `start-dev --search-attribute` registers them
 * only when it creates the namespace. With an existing `--db-filename` the namespace exists and
 * attributes added to the list since are silently NOT registered (verified on CLI v1.5.1 /
 * Server 1.29.1). `startTemporalDevServer` therefore always runs {@link ensureSearchAttributes}
 * after start, which adds the missing ones through the operator service.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { Connection } from '@temporalio/client';
import { MongoClient } from 'mongodb';
import { InfraError, ferretdbBinary, temporalBinary } from './binaries';

export type SearchAttributeTypeName = 'Text' | 'Keyword' | 'Int' | 'Double' | 'Bool' | 'Datetime' | 'KeywordList';

/** `temporal.api.enums.v1.IndexedValueType` wire values. */
export const INDEXED_VALUE_TYPE: Record<SearchAttributeTypeName, number> = {
  Text: 1,
  Keyword: 2,
  Int: 3,
  Double: 4,
  Bool: 5,
  Datetime: 6,
  KeywordList: 7,
};

function typeName(code: number | undefined): string {
  return Object.entries(INDEXED_VALUE_TYPE).find(([, c]) => c === code)?.[0] ?? `type #${String(code)}`;
}

/**
 * Dynamic config the dev server gets unless overridden (`dynamicConfig: { key: undefined }`
 * removes one). Deliberately empty:
 * - Features need none on Server 1.29.1: updates (`frontend.enableUpdateWorkflowExecution`),
 *   update-with-start (`frontend.enableExecuteMultiOperation`) and async-accepted updates default
 *   to true (server `common/dynamicconfig/constants.go`; update-with-start verified end to end).
 *   CLI v1.5.1 itself already sets `system.forceSearchAttributesCacheRefreshOnRead=true`, raises
 *   `frontend/history.persistenceMaxQPS` and the host-level mutable-state cache.
 * - Throughput: the one-shard knobs found (`history.shardIOConcurrency`,
 *   `history.enableHostLevelEventsCache`, `history.transfer/timerProcessorMaxPollRPS`,
 *   `matching.numTaskqueueRead/WritePartitions`) did not beat the defaults when measured here (one
 *   process starting 600 one-activity workflows, 100 at a time, on 2 cores: ~50 wf/s either way;
 *   the box is CPU-bound). Pass them through `dynamicConfig` to experiment.
 */
export const DEV_SERVER_DYNAMIC_CONFIG: Readonly<Record<string, unknown>> = {};

export interface TemporalDevServerOptions {
  /** Defaults to the cached binary, `temporalBinary()`. */
  binary?: string;
  /** Directory for the server log (`temporal-<port>.log`). */
  logDir: string;
  ip?: string;
  port?: number;
  /** Serve the Web UI (on `uiPort`, or a free port); headless otherwise. */
  ui?: boolean;
  uiPort?: number;
  /** Persistent SQLite file; in-memory when absent. Its directory must exist. */
  dbFile?: string;
  /** SQLite pragmas for a db file; default WAL + synchronous=NORMAL. */
  sqlitePragmas?: Readonly<Record<string, string>>;
  namespace?: string;
  /** Name → type, e.g. `SEARCH_ATTRIBUTES` from src/contracts.ts. */
  searchAttributes?: Readonly<Record<string, SearchAttributeTypeName>>;
  logLevel?: 'debug' | 'info' | 'warn' | 'error';
  /** Merged over {@link DEV_SERVER_DYNAMIC_CONFIG}; values are JSON-encoded. */
  dynamicConfig?: Readonly<Record<string, unknown>>;
  extraArgs?: readonly string[];
  /** Default 60 s. */
  readyTimeoutMs?: number;
}

export interface ServerProcess {
  pid: number;
  logFile: string;
  /** SIGTERM, then SIGKILL after 5 s; resolves once the process is gone. Idempotent. */
  stop(): Promise<void>;
  /** Leaves the process running after we exit (drops it from the exit cleanup). */
  disown(): void;
}

export interface TemporalDevServer extends ServerProcess {
  /** `127.0.0.1:<port>`, for `Connection.connect({ address })` and `TEMPORAL_ADDRESS`. */
  address: string;
  port: number;
  namespace: string;
  uiUrl?: string;
  dbFile?: string;
  /** Search attributes this start had to add through the operator service. */
  addedSearchAttributes: string[];
}

export interface FerretDbOptions {
  binary?: string;
  logDir: string;
  /** Directory for the SQLite files (one per database); created if missing. */
  sqliteDir: string;
  port?: number;
  logLevel?: 'debug' | 'info' | 'warn' | 'error';
  /**
   * Give every collection the index FerretDB's `_id` lookups can use (infra/ferretdb/idindex.go);
   * default true. `false` (`--no-id-index`) is FerretDB as released: point operations scan.
   */
  idIndex?: boolean;
  /**
   * SQLite's `synchronous` for every database (`--sqlite-synchronous`); default the wrapper's,
   * `normal`: no fsync per commit, nothing lost when a process crashes, the last commits may be lost
   * on a power cut (the database stays consistent). `full` is FerretDB as released: an fsync per
   * commit.
   */
  synchronous?: SqliteSynchronous;
  /** Default 30 s. */
  readyTimeoutMs?: number;
}

/** The wrapper's `--sqlite-synchronous` values (infra/ferretdb/main.go). */
export const SQLITE_SYNCHRONOUS = ['normal', 'full'] as const;
export type SqliteSynchronous = (typeof SQLITE_SYNCHRONOUS)[number];

/**
 * Reads a launcher's `--sqlite-synchronous` choice (an env variable or a flag; `name` says which
 * in the error). Empty or absent: undefined, i.e. the wrapper's default.
 */
export function parseSqliteSynchronous(value: string | undefined, name: string): SqliteSynchronous | undefined {
  if (!value) return undefined;
  const v = value.toLowerCase();
  if ((SQLITE_SYNCHRONOUS as readonly string[]).includes(v)) return v as SqliteSynchronous;
  throw new InfraError(`reading ${name}`, `expected ${SQLITE_SYNCHRONOUS.join(' or ')}, got ${JSON.stringify(value)}`);
}

export interface FerretDb extends ServerProcess {
  /** `mongodb://127.0.0.1:<port>/` */
  uri: string;
  port: number;
  sqliteDir: string;
}

// ---------------------------------------------------------------------------------------------
// Temporal

/** The `ServerProcess` part of a started server. */
function processHandle(proc: ServerProcess): ServerProcess {
  return { pid: proc.pid, logFile: proc.logFile, stop: proc.stop, disown: proc.disown };
}

export async function startTemporalDevServer(opts: TemporalDevServerOptions): Promise<TemporalDevServer> {
  const ip = opts.ip ?? '127.0.0.1';
  const port = opts.port ?? (await freePort(ip));
  const namespace = opts.namespace ?? 'default';
  const searchAttributes = opts.searchAttributes ?? {};
  const args = ['server', 'start-dev', '--ip', ip, '--port', String(port)];
  let uiUrl: string | undefined;
  if (opts.ui) {
    const uiPort = opts.uiPort ?? (await freePort(ip));
    args.push('--ui-port', String(uiPort));
    uiUrl = `http://${ip}:${uiPort}`;
  } else {
    args.push('--headless');
  }
  if (opts.dbFile) {
    args.push('--db-filename', opts.dbFile);
    const pragmas = opts.sqlitePragmas ?? { journal_mode: 'WAL', synchronous: 'NORMAL' };
    for (const [k, v] of Object.entries(pragmas)) args.push('--sqlite-pragma', `${k}=${v}`);
  }
  args.push('--namespace', namespace);
  for (const [name, type] of Object.entries(searchAttributes)) args.push('--search-attribute', `${name}=${type}`);
  args.push('--log-level', opts.logLevel ?? 'warn');
  const dynamicConfig: Record<string, unknown> = { ...DEV_SERVER_DYNAMIC_CONFIG, ...opts.dynamicConfig };
  for (const [k, v] of Object.entries(dynamicConfig)) {
    if (v !== undefined) args.push('--dynamic-config-value', `${k}=${JSON.stringify(v)}`);
  }
  args.push(...(opts.extraArgs ?? []));

  const proc = launch(
    'Temporal dev server',
    opts.binary ?? temporalBinary(),
    args,
    opts.logDir,
    `temporal-${port}.log`,
  );
  const address = `${ip}:${port}`;
  try {
    const deadline = Date.now() + (opts.readyTimeoutMs ?? 60_000);
    const connection = await waitUntil(proc, deadline, `Temporal at ${address}`, async () => {
      if (!(await tcpProbe(ip, port))) throw new Error(`port ${port} not accepting connections yet`);
      const conn = await Connection.connect({ address, connectTimeout: 2_000 });
      try {
        await conn.withDeadline(Date.now() + 2_000, async () => {
          await conn.workflowService.getSystemInfo({});
          await conn.workflowService.describeNamespace({ namespace });
        });
        return conn;
      } catch (err) {
        await conn.close();
        throw err;
      }
    });
    let added: string[];
    try {
      const left = Math.max(5_000, deadline - Date.now());
      added = (await ensureSearchAttributes({ connection, namespace, searchAttributes, timeoutMs: left })).added;
    } finally {
      await connection.close();
    }
    return {
      address,
      port,
      namespace,
      uiUrl,
      dbFile: opts.dbFile,
      addedSearchAttributes: added,
      ...processHandle(proc),
    };
  } catch (err) {
    await proc.stop();
    throw withLogTail(err, proc.logFile);
  }
}

export interface EnsureSearchAttributesOptions {
  /** An open connection, or an address to connect to (closed again afterwards). */
  connection?: Connection;
  address?: string;
  namespace?: string;
  searchAttributes: Readonly<Record<string, SearchAttributeTypeName>>;
  /** How long to wait for the attributes to become visible. Default 30 s. */
  timeoutMs?: number;
}

/**
 * Makes sure every search attribute exists on a running server, adding the missing ones
 * (`operatorService.addSearchAttributes`) and waiting until all are listed. Needed for a dev
 * server started on an existing `--db-filename` (start-dev does not add new ones there); a
 * no-op otherwise. Fails when an attribute exists with another type (types cannot change).
 */
export async function ensureSearchAttributes(opts: EnsureSearchAttributesOptions): Promise<{ added: string[] }> {
  const namespace = opts.namespace ?? 'default';
  const wanted = Object.entries(opts.searchAttributes);
  if (wanted.length === 0) return { added: [] };
  let connection = opts.connection;
  const own = !connection;
  if (!connection) {
    if (!opts.address) throw new Error('ensureSearchAttributes: give a connection or an address');
    connection = await Connection.connect({ address: opts.address, connectTimeout: 10_000 });
  }
  const conn = connection;
  try {
    const list = async (): Promise<Record<string, number>> => {
      const res = await conn.operatorService.listSearchAttributes({ namespace });
      return (res.customAttributes ?? {}) as Record<string, number>;
    };
    const existing = await list();
    const mismatched = wanted.filter(([name, type]) => name in existing && existing[name] !== INDEXED_VALUE_TYPE[type]);
    if (mismatched.length > 0) {
      throw new Error(
        `search attributes exist with another type: ${mismatched
          .map(([name, type]) => `${name} (wanted ${type}, server has ${typeName(existing[name])})`)
          .join(', ')}; use a fresh database file`,
      );
    }
    const missing = wanted.filter(([name]) => !(name in existing));
    if (missing.length > 0) {
      const searchAttributes: Record<string, number> = {};
      for (const [name, type] of missing) searchAttributes[name] = INDEXED_VALUE_TYPE[type];
      await conn.operatorService.addSearchAttributes({ namespace, searchAttributes });
    }
    const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
    for (;;) {
      const now = await list();
      const notYet = wanted.filter(([name]) => !(name in now)).map(([name]) => name);
      if (notYet.length === 0) break;
      if (Date.now() > deadline) throw new Error(`search attributes still not listed: ${notYet.join(', ')}`);
      await sleep(200);
    }
    return { added: missing.map(([name]) => name) };
  } finally {
    if (own) await conn.close();
  }
}

// ---------------------------------------------------------------------------------------------
// FerretDB

export async function startFerretDb(opts: FerretDbOptions): Promise<FerretDb> {
  const ip = '127.0.0.1';
  const port = opts.port ?? (await freePort(ip));
  fs.mkdirSync(opts.sqliteDir, { recursive: true });
  const args = [
    '--listen-addr',
    `${ip}:${port}`,
    '--sqlite-dir',
    opts.sqliteDir,
    '--log-level',
    opts.logLevel ?? 'warn',
  ];
  if (opts.idIndex === false) args.push('--no-id-index');
  if (opts.synchronous) args.push('--sqlite-synchronous', opts.synchronous);
  const proc = launch('FerretDB', opts.binary ?? ferretdbBinary(), args, opts.logDir, `ferretdb-${port}.log`);
  const uri = `mongodb://${ip}:${port}/`;
  try {
    await waitUntil(proc, Date.now() + (opts.readyTimeoutMs ?? 30_000), `FerretDB at ${uri}`, async () => {
      if (!(await tcpProbe(ip, port))) throw new Error(`port ${port} not accepting connections yet`);
      const client = new MongoClient(uri, { serverSelectionTimeoutMS: 2_000, connectTimeoutMS: 2_000 });
      try {
        await client.connect();
        await client.db('admin').command({ ping: 1 });
      } finally {
        await client.close();
      }
    });
    return {
      uri,
      port,
      sqliteDir: opts.sqliteDir,
      ...processHandle(proc),
    };
  } catch (err) {
    await proc.stop();
    throw withLogTail(err, proc.logFile);
  }
}

// ---------------------------------------------------------------------------------------------
// Child processes

interface Launched extends ServerProcess {
  name: string;
  child: ChildProcess;
  /** Set once the process is gone (or failed to spawn). */
  exit?: string;
  exited: Promise<void>;
}

const live = new Set<Launched>();

function launch(name: string, binary: string, args: string[], logDir: string, logName: string): Launched {
  fs.mkdirSync(logDir, { recursive: true });
  const logFile = path.join(logDir, logName);
  const fd = fs.openSync(logFile, 'a');
  fs.writeSync(fd, `# ${new Date().toISOString()} ${binary} ${args.join(' ')}\n`);
  let child: ChildProcess;
  try {
    child = spawn(binary, args, { stdio: ['ignore', fd, fd] });
  } finally {
    fs.closeSync(fd);
  }
  let markExited!: () => void;
  const exited = new Promise<void>((r) => (markExited = r));
  let stopping: Promise<void> | undefined;
  const proc: Launched = {
    name,
    child,
    pid: child.pid ?? -1,
    logFile,
    exited,
    stop: () => (stopping ??= stopProcess(proc)),
    disown: () => {
      live.delete(proc);
      child.unref();
    },
  };
  child.on('error', (err) => {
    proc.exit = `could not be started: ${err.message}`;
    live.delete(proc);
    markExited();
  });
  child.on('exit', (code, signal) => {
    proc.exit = signal ? `was killed by ${signal}` : `exited with code ${code}`;
    live.delete(proc);
    markExited();
  });
  installCleanupHooks();
  live.add(proc);
  return proc;
}

async function stopProcess(proc: Launched): Promise<void> {
  if (proc.exit !== undefined) return;
  proc.child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const gone = await Promise.race([
    proc.exited.then(() => true),
    new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 5_000))),
  ]);
  clearTimeout(timer);
  if (!gone) {
    proc.child.kill('SIGKILL');
    await proc.exited;
  }
}

let hooksInstalled = false;

/** Once per process: stop the children on exit and on signals nobody else handles. */
function installCleanupHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  // Synchronous: SIGTERM is all we can do here; both servers exit on it within ~1 s.
  process.on('exit', () => {
    for (const p of live) p.child.kill('SIGTERM');
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    let stopping = false;
    const handler = (): void => {
      // A launcher with its own handler owns the shutdown; the exit hook above still applies.
      if (process.listenerCount(sig) > 1) return;
      const reraise = (): void => {
        process.off(sig, handler);
        process.kill(process.pid, sig);
      };
      if (stopping) {
        // Second signal: do not wait any longer.
        for (const p of live) p.child.kill('SIGKILL');
        reraise();
        return;
      }
      stopping = true;
      void Promise.allSettled([...live].map((p) => p.stop())).then(reraise);
    };
    process.on(sig, handler);
  }
}

async function waitUntil<T>(proc: Launched, deadline: number, what: string, attempt: () => Promise<T>): Promise<T> {
  let last = 'no attempt yet';
  for (;;) {
    if (proc.exit !== undefined) throw new Error(`${proc.name} ${proc.exit} before it was ready (${what})`);
    try {
      return await attempt();
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    if (Date.now() > deadline) throw new Error(`${what} was not ready in time; last error: ${last}`);
    await Promise.race([sleep(250), proc.exited]);
  }
}

function withLogTail(err: unknown, logFile: string): Error {
  const message = err instanceof Error ? err.message : String(err);
  return new Error(`${message}\n--- last lines of ${logFile} ---\n${logTail(logFile)}`);
}

/** The last `lines` lines of a log file (reads at most its last 64 KiB). */
export function logTail(file: string, lines = 40): string {
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const len = Math.min(size, 64 * 1024);
      const buf = Buffer.alloc(len);
      fs.readSync(fd, buf, 0, len, size - len);
      return buf
        .toString('utf8')
        .split('\n')
        .slice(-lines - 1)
        .join('\n');
    } finally {
      fs.closeSync(fd);
    }
  } catch (err) {
    return `(cannot read: ${(err as Error).message})`;
  }
}

// ---------------------------------------------------------------------------------------------
// Network helpers

/** A currently free TCP port on `host` (listen on 0, read, close). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error('could not read a free port'))));
    });
  });
}

function tcpProbe(host: string, port: number, timeoutMs = 1_000): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port });
    const done = (ok: boolean): void => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
