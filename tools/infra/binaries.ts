/**
 * The two server binaries the dev stack and the integration tests run, built from source with Go
 * into a user-level cache (nothing is downloaded at test time, nothing lands in the repository):
 *
 * - `temporal-cli-v1.5.1`: `go install github.com/temporalio/cli/cmd/temporal@v1.5.1`
 *   (Temporal Server 1.29.1 + UI 2.42.1), linked the way the official release is
 *   (`-s -w -X …Version=1.5.1`, CGO off), so `temporal --version` says 1.5.1, not 0.0.0-DEV.
 * - `ferretdb-embedded-<hash>`: the wrapper in `infra/ferretdb` (FerretDB v1.24 over SQLite); the
 *   hash covers its go.mod, go.sum and Go files, so editing the wrapper builds a new binary.
 *
 * Layout under {@link cacheDir}: `bin/` (binaries, lock files, build logs) and `go/mod`, `go/build`
 * (Go's module and build caches, kept apart from the user's own). `ensureBinaries()` returns at
 * once when both binaries exist; otherwise it checks Go, takes a per-binary lock (so `npm run dev`
 * and `npm test` started together do not build twice), builds into a temporary path, smoke-tests
 * the result and renames it into place (a killed build never leaves a half-written binary).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export const TEMPORAL_CLI_MODULE = 'github.com/temporalio/cli';
export const TEMPORAL_CLI_VERSION = 'v1.5.1';
/** What `go.mod` of temporalio/cli v1.5.1 says (`go 1.25.0`); re-read from the module proxy before a build. */
const TEMPORAL_CLI_GO_KNOWN = '1.25.0';

/** Repository root (this file is `tools/infra/binaries.ts`). */
export const REPO_ROOT = path.resolve(__dirname, '..', '..');
export const FERRETDB_WRAPPER_DIR = path.join(REPO_ROOT, 'infra', 'ferretdb');
export const FERRETDB_WRAPPER_FILES = ['go.mod', 'go.sum', 'main.go', 'idindex.go'] as const;

export type Env = Readonly<Record<string, string | undefined>>;

/** Thrown for any failed step; `step` names it ("building temporal CLI v1.5.1 …"). */
export class InfraError extends Error {
  constructor(
    readonly step: string,
    detail: string,
  ) {
    super(`${step} failed: ${detail}`);
    this.name = 'InfraError';
  }
}

// ---------------------------------------------------------------------------------------------
// Paths (pure: everything comes from `env` and `home`).

/**
 * `$COEXIST_RELAY_CACHE`, else `$XDG_CACHE_HOME/coexist-relay`, else `~/.cache/coexist-relay`.
 * Empty values count as unset; a relative `XDG_CACHE_HOME` is ignored (the XDG spec says so); a
 * relative `COEXIST_RELAY_CACHE` is taken relative to the current directory.
 */
export function cacheDir(env: Env = process.env, home: string = os.homedir()): string {
  const own = env.COEXIST_RELAY_CACHE;
  if (own) return path.resolve(own);
  const xdg = env.XDG_CACHE_HOME;
  if (xdg && path.isAbsolute(xdg)) return path.join(xdg, 'coexist-relay');
  return path.join(home, '.cache', 'coexist-relay');
}

export function binDir(env: Env = process.env, home?: string): string {
  return path.join(cacheDir(env, home), 'bin');
}

/** Go's module and build caches for our builds (`GOMODCACHE`, `GOCACHE`). */
export function goCacheDirs(env: Env = process.env, home?: string): { modCache: string; buildCache: string } {
  const go = path.join(cacheDir(env, home), 'go');
  return { modCache: path.join(go, 'mod'), buildCache: path.join(go, 'build') };
}

/** The environment our `go` commands run in (builds here, the wrapper's Go tests in the suite). */
export function goBuildEnv(env: Env = process.env): NodeJS.ProcessEnv {
  const { modCache, buildCache } = goCacheDirs(env);
  return {
    ...env,
    GOMODCACHE: modCache,
    GOCACHE: buildCache,
    // -modcacherw: the module cache stays deletable with a plain `rm -rf`.
    GOFLAGS: '-buildvcs=false -modcacherw',
    // Never let go fetch another toolchain behind our back: the version check is the contract.
    GOTOOLCHAIN: 'local',
    CGO_ENABLED: '0',
  };
}

export function temporalBinary(env: Env = process.env, home?: string): string {
  return path.join(binDir(env, home), `temporal-cli-${TEMPORAL_CLI_VERSION}`);
}

/** Short content hash of the FerretDB wrapper sources (go.mod, go.sum, main.go, idindex.go). */
export function ferretdbWrapperHash(wrapperDir: string = FERRETDB_WRAPPER_DIR): string {
  const h = createHash('sha256');
  for (const name of FERRETDB_WRAPPER_FILES) {
    h.update(name)
      .update('\0')
      .update(fs.readFileSync(path.join(wrapperDir, name)))
      .update('\0');
  }
  return h.digest('hex').slice(0, 12);
}

export function ferretdbBinary(
  env: Env = process.env,
  wrapperDir: string = FERRETDB_WRAPPER_DIR,
  home?: string,
): string {
  return path.join(binDir(env, home), `ferretdb-embedded-${ferretdbWrapperHash(wrapperDir)}`);
}

// ---------------------------------------------------------------------------------------------
// Go versions (pure).

/** `go1.26.8`, `1.25.0`, `go1.25rc1`, `devel go1.26-abcdef` → [major, minor, patch]. */
export function parseGoVersion(text: string): [number, number, number] | undefined {
  const m = /(?:^|\s|go)(\d+)\.(\d+)(?:\.(\d+))?/.exec(text.trim());
  if (!m) return undefined;
  return [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)];
}

export function compareGoVersions(a: [number, number, number], b: [number, number, number]): number {
  return a[0] - b[0] || a[1] - b[1] || a[2] - b[2];
}

/** The `go` directive of a go.mod file (`go 1.24` → `1.24`). */
export function goDirective(goMod: string): string | undefined {
  return /^go\s+(\S+)\s*$/m.exec(goMod)?.[1];
}

// ---------------------------------------------------------------------------------------------
// ensureBinaries

export interface EnsureOptions {
  env?: Env;
  /** Progress lines (build start/end, timings). Defaults to stderr. */
  log?: (line: string) => void;
}

export interface Binaries {
  temporal: string;
  ferretdb: string;
  /** Names of the binaries built by this call (empty when both were cached). */
  built: string[];
  /** Names of the binaries another process was building while this call waited for it. */
  waited: string[];
}

interface Target {
  name: string;
  path: string;
  build(ctx: BuildContext, tmpPath: string): Promise<void>;
  smokeArgs: string[];
}

interface BuildContext {
  goVersion: [number, number, number];
  goVersionText: string;
  goEnv: NodeJS.ProcessEnv;
  log: (line: string) => void;
}

const defaultLog = (line: string): void => {
  process.stderr.write(`[infra] ${line}\n`);
};

function isExecutableFile(p: string): boolean {
  try {
    fs.accessSync(p, fs.constants.X_OK);
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

const secs = (ms: number): string => `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)}s`;

/**
 * Makes sure both binaries exist in the cache, building what is missing. Fast (a few stat calls)
 * when they exist. Throws {@link InfraError} naming the failed step, with the tail of go's output.
 */
export async function ensureBinaries(opts: EnsureOptions = {}): Promise<Binaries> {
  const env = opts.env ?? process.env;
  const log = opts.log ?? defaultLog;
  const started = Date.now();
  const bins = binDir(env);
  const temporal = temporalBinary(env);
  const ferretHash = ferretdbWrapperHash();
  const ferretdb = path.join(bins, `ferretdb-embedded-${ferretHash}`);

  const targets: Target[] = [
    {
      name: `ferretdb-embedded (infra/ferretdb, ${ferretHash})`,
      path: ferretdb,
      smokeArgs: ['-h'],
      build: (ctx, tmp) => buildFerretdb(ctx, tmp, `ferretdb-embedded (infra/ferretdb, ${ferretHash})`),
    },
    {
      name: `temporal CLI ${TEMPORAL_CLI_VERSION}`,
      path: temporal,
      smokeArgs: ['--version'],
      build: (ctx, tmp) => buildTemporal(ctx, tmp),
    },
  ];
  const missing = targets.filter((t) => !isExecutableFile(t.path));
  if (missing.length === 0) return { temporal, ferretdb, built: [], waited: [] };

  fs.mkdirSync(bins, { recursive: true });
  const goEnv = goBuildEnv(env);
  const { version: goVersion, text: goVersionText } = await checkGo(goEnv);
  log(`using ${goVersionText}; cache ${cacheDir(env)}`);
  const ctx: BuildContext = { goVersion, goVersionText, goEnv, log };

  const built: string[] = [];
  const waited: string[] = [];
  for (const target of missing) {
    await withLock(`${target.path}.lock`, target.name, log, async () => {
      if (isExecutableFile(target.path)) {
        log(`${target.name}: built meanwhile by another process`);
        waited.push(target.name);
        return;
      }
      removeLeftovers(target.path);
      const tmp = `${target.path}.tmp-${process.pid}`;
      const t0 = Date.now();
      try {
        await target.build(ctx, tmp);
        const version = await smokeTest(target, tmp, goEnv);
        fs.renameSync(tmp, target.path);
        log(`${target.name}: built in ${secs(Date.now() - t0)}${version ? ` (${version})` : ''} → ${target.path}`);
        built.push(target.name);
      } finally {
        fs.rmSync(tmp, { force: true, recursive: true });
      }
    });
  }
  log(`binaries ready in ${secs(Date.now() - started)}`);
  return { temporal, ferretdb, built, waited };
}

/** Removes temp outputs of builds whose process is gone (we hold the lock, so none is running). */
function removeLeftovers(target: string): void {
  const dir = path.dirname(target);
  const prefix = `${path.basename(target)}.tmp-`;
  for (const entry of fs.readdirSync(dir)) {
    if (entry.startsWith(prefix)) fs.rmSync(path.join(dir, entry), { force: true, recursive: true });
  }
}

async function checkGo(goEnv: NodeJS.ProcessEnv): Promise<{ version: [number, number, number]; text: string }> {
  const step = 'checking Go';
  let out: RunResult;
  try {
    out = await run('go', ['env', 'GOVERSION'], { env: goEnv, cwd: os.tmpdir() });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new InfraError(
        step,
        '`go` is not on PATH. The Temporal CLI and FerretDB are built from source; install Go ≥ ' +
          `${TEMPORAL_CLI_GO_KNOWN} (https://go.dev/dl/) and put its bin directory on PATH.`,
      );
    }
    throw new InfraError(step, String(err));
  }
  if (out.code !== 0) throw new InfraError(step, `\`go env GOVERSION\` exited with ${out.code}\n${out.tail}`);
  const text = out.tail.trim();
  const version = parseGoVersion(text);
  if (!version) throw new InfraError(step, `cannot read the Go version from ${JSON.stringify(text)}`);
  return { version, text };
}

function requireGo(ctx: BuildContext, what: string, required: string, where: string): void {
  const need = parseGoVersion(required);
  if (need && compareGoVersions(ctx.goVersion, need) < 0) {
    throw new InfraError(
      `checking Go for ${what}`,
      `${what} needs Go ≥ ${required} (${where}) but \`go\` on PATH is ${ctx.goVersionText}. ` +
        'Install a newer Go (https://go.dev/dl/) and run `npm run infra` again.',
    );
  }
}

async function buildTemporal(ctx: BuildContext, tmp: string): Promise<void> {
  const what = `temporal CLI ${TEMPORAL_CLI_VERSION}`;
  const modVersion = `${TEMPORAL_CLI_MODULE}@${TEMPORAL_CLI_VERSION}`;
  // The module's own `go` directive (fetches only its .info/.mod; answered from the cache when present).
  const info = await run('go', ['list', '-m', '-json', modVersion], { env: ctx.goEnv, cwd: os.tmpdir() });
  if (info.code !== 0) {
    throw new InfraError(
      `resolving ${what} from the Go module proxy`,
      `go list -m exited with ${info.code}\n${info.tail}`,
    );
  }
  let required = TEMPORAL_CLI_GO_KNOWN;
  try {
    required = (JSON.parse(info.stdout) as { GoVersion?: string }).GoVersion ?? required;
  } catch {
    // keep the known value
  }
  requireGo(ctx, what, required, `go.mod of ${modVersion}`);

  // `go install pkg@version` cannot name its output: install into a private GOBIN, then move.
  fs.mkdirSync(tmp, { recursive: true });
  const logFile = path.join(path.dirname(tmp), `temporal-cli-${TEMPORAL_CLI_VERSION}.build.log`);
  ctx.log(`${what}: building from the Go module proxy (first time ≈ 4 min on 2 cores; log: ${logFile})`);
  const ldflags = `-s -w -X ${TEMPORAL_CLI_MODULE}/temporalcli.Version=${TEMPORAL_CLI_VERSION.replace(/^v/, '')}`;
  const res = await run(
    'go',
    ['install', `-ldflags=${ldflags}`, `${TEMPORAL_CLI_MODULE}/cmd/temporal@${TEMPORAL_CLI_VERSION}`],
    {
      env: { ...ctx.goEnv, GOBIN: tmp },
      cwd: os.tmpdir(),
      logFile,
    },
  );
  if (res.code !== 0) {
    throw new InfraError(
      `building ${what} from the Go module proxy`,
      `go install exited with ${res.code} (full log: ${logFile}); last lines:\n${res.tail}`,
    );
  }
  // Move the binary out of the private GOBIN so `tmp` itself becomes the binary.
  const staged = `${tmp}.bin`;
  fs.renameSync(path.join(tmp, 'temporal'), staged);
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.renameSync(staged, tmp);
}

async function buildFerretdb(ctx: BuildContext, tmp: string, what: string): Promise<void> {
  const goMod = fs.readFileSync(path.join(FERRETDB_WRAPPER_DIR, 'go.mod'), 'utf8');
  requireGo(ctx, what, goDirective(goMod) ?? '1.0', 'infra/ferretdb/go.mod');
  const logFile = path.join(path.dirname(tmp), 'ferretdb-embedded.build.log');
  ctx.log(`${what}: building (first time downloads FerretDB's modules, ≈ 1–2 min; log: ${logFile})`);
  const res = await run('go', ['build', '-ldflags=-s -w', '-o', tmp, '.'], {
    env: ctx.goEnv,
    cwd: FERRETDB_WRAPPER_DIR,
    logFile,
  });
  if (res.code !== 0) {
    throw new InfraError(
      `building ${what}`,
      `go build exited with ${res.code} (full log: ${logFile}); last lines:\n${res.tail}`,
    );
  }
}

async function smokeTest(target: Target, bin: string, env: NodeJS.ProcessEnv): Promise<string> {
  const res = await run(bin, target.smokeArgs, { env, cwd: os.tmpdir() });
  if (res.code !== 0) {
    throw new InfraError(`smoke-testing the freshly built ${target.name}`, `exited with ${res.code}\n${res.tail}`);
  }
  return target.smokeArgs[0] === '--version' ? res.stdout.trim() : '';
}

// ---------------------------------------------------------------------------------------------
// Processes

interface RunResult {
  code: number;
  stdout: string;
  /** Last lines of stdout+stderr. */
  tail: string;
}

const TAIL_LINES = 25;

/** Current go child, so an interrupt can stop it and a temp output is never left half-written. */
const running = new Set<ChildProcess>();

function run(
  cmd: string,
  args: string[],
  opts: { env: NodeJS.ProcessEnv; cwd: string; logFile?: string },
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    let child: ChildProcess;
    try {
      child = spawn(cmd, args, { env: opts.env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      reject(err);
      return;
    }
    const log = opts.logFile ? fs.createWriteStream(opts.logFile) : undefined;
    log?.write(`$ ${cmd} ${args.join(' ')}   (cwd ${opts.cwd})\n`);
    let stdout = '';
    let lines: string[] = [];
    let partial = '';
    const collect = (chunk: Buffer, isStdout: boolean): void => {
      const s = chunk.toString('utf8');
      if (isStdout && stdout.length < 1 << 20) stdout += s;
      log?.write(chunk);
      const parts = (partial + s).split('\n');
      partial = parts.pop() ?? '';
      lines.push(...parts);
      if (lines.length > TAIL_LINES * 4) lines = lines.slice(-TAIL_LINES);
    };
    child.stdout?.on('data', (c: Buffer) => collect(c, true));
    child.stderr?.on('data', (c: Buffer) => collect(c, false));
    running.add(child);
    const onInterrupt = installInterruptHandlers();
    child.on('error', (err) => {
      running.delete(child);
      onInterrupt();
      log?.end();
      reject(err);
    });
    child.on('close', (code, signal) => {
      running.delete(child);
      onInterrupt();
      if (partial) lines.push(partial);
      log?.end();
      const tail = lines.slice(-TAIL_LINES).join('\n');
      resolve({ code: code ?? (signal ? 128 : 1), stdout, tail: signal ? `${tail}\n(killed by ${signal})` : tail });
    });
  });
}

/**
 * While a go child runs, SIGINT/SIGTERM/SIGHUP stop it first (its temp output is removed by the
 * `finally` above or by the next run), then the signal is re-raised with its default action.
 * Returns the uninstaller.
 */
function installInterruptHandlers(): () => void {
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  const handler = (sig: NodeJS.Signals): void => {
    for (const c of running) c.kill('SIGTERM');
    uninstall();
    // Somebody else handles it (e.g. a launcher's graceful shutdown): leave it to them.
    if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
  };
  const onExit = (): void => {
    for (const c of running) c.kill('SIGTERM');
  };
  const uninstall = (): void => {
    for (const s of signals) process.off(s, handler);
    process.off('exit', onExit);
  };
  for (const s of signals) process.on(s, handler);
  process.on('exit', onExit);
  return uninstall;
}

// ---------------------------------------------------------------------------------------------
// Lock

interface LockInfo {
  pid: number;
  host: string;
  since: string;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function lockIsStale(lockPath: string): boolean {
  let info: LockInfo | undefined;
  let ageMs = 0;
  try {
    ageMs = Date.now() - fs.statSync(lockPath).mtimeMs;
    info = JSON.parse(fs.readFileSync(lockPath, 'utf8')) as LockInfo;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false; // gone: retry the create
    return ageMs > 10_000; // unreadable: a writer died between create and write
  }
  if (info.host === os.hostname()) return !pidAlive(info.pid);
  return ageMs > 2 * 60 * 60_000; // another machine sharing the cache: trust it for 2 h
}

/**
 * A lock file next to the binary (`O_EXCL` create, holder's pid inside; a dead holder's lock is
 * taken over). It saves a second concurrent build, it is not what keeps the result correct:
 * every build writes its own temp path and the final rename is atomic.
 */
export async function withLock<T>(
  lockPath: string,
  what: string,
  log: (l: string) => void,
  fn: () => Promise<T>,
): Promise<T> {
  const deadline = Date.now() + 30 * 60_000;
  let announced = false;
  for (;;) {
    try {
      const fd = fs.openSync(lockPath, 'wx');
      const info: LockInfo = { pid: process.pid, host: os.hostname(), since: new Date().toISOString() };
      fs.writeSync(fd, JSON.stringify(info));
      fs.closeSync(fd);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new InfraError(`locking ${lockPath}`, String(err));
      }
    }
    if (lockIsStale(lockPath)) {
      fs.rmSync(lockPath, { force: true });
      continue;
    }
    if (!announced) {
      let holder = '';
      try {
        holder = ` (pid ${(JSON.parse(fs.readFileSync(lockPath, 'utf8')) as LockInfo).pid})`;
      } catch {
        // ignore
      }
      log(`${what}: another process${holder} is building it; waiting for it (lock ${lockPath})`);
      announced = true;
    }
    if (Date.now() > deadline)
      throw new InfraError(`waiting for the build lock of ${what}`, `still held after 30 min: ${lockPath}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
  const release = (): void => {
    try {
      const info = JSON.parse(fs.readFileSync(lockPath, 'utf8')) as LockInfo;
      if (info.pid === process.pid && info.host === os.hostname()) fs.rmSync(lockPath, { force: true });
    } catch {
      // already gone
    }
  };
  process.on('exit', release);
  try {
    return await fn();
  } finally {
    process.off('exit', release);
    release();
  }
}
