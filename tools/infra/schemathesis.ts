/**
 * schemathesis (PyPI), the property-based API tester the contract test runs against the live
 * service, installed into a virtualenv in the user-level cache (see {@link cacheDir}), never into
 * the repository or the user's own Python: `<cache>/schemathesis/<version>/` holds
 * `python3 -m venv` plus `pip install schemathesis==<version>` (PyPI only). `npm test` runs it
 * (`tools/infra/fetch.ts --schemathesis`), so `.ci/run` and a fresh machine get it. Needs Python ≥ 3.9
 * (`$PYTHON`, else `python3`). A `.complete` marker is written last, so an interrupted install is
 * removed and redone; a lock file keeps two concurrent runs from installing twice.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { cacheDir, InfraError, withLock, type Env } from './binaries';

export const SCHEMATHESIS_VERSION = '4.32.5';

const execFileP = promisify(execFile);

/** The virtualenv of the pinned version. */
export function schemathesisVenv(env: Env = process.env, home?: string): string {
  return path.join(cacheDir(env, home), 'schemathesis', SCHEMATHESIS_VERSION);
}

/** The `schemathesis` command inside the virtualenv (present once {@link ensureSchemathesis} ran). */
export function schemathesisBinary(env: Env = process.env, home?: string): string {
  return path.join(schemathesisVenv(env, home), 'bin', 'schemathesis');
}

const markerOf = (venv: string): string => path.join(venv, '.complete');

/** True when the pinned version is installed completely. */
export function schemathesisInstalled(env: Env = process.env): boolean {
  return fs.existsSync(markerOf(schemathesisVenv(env))) && fs.existsSync(schemathesisBinary(env));
}

/**
 * Makes sure the pinned schemathesis is installed; returns its command and whether this call
 * installed it. Fast (two stat calls) when it is. The install takes about a minute from PyPI.
 */
export async function ensureSchemathesis(
  opts: { env?: Env; log?: (line: string) => void } = {},
): Promise<{ binary: string; installed: boolean }> {
  const env = opts.env ?? process.env;
  const log = opts.log ?? ((l: string) => process.stderr.write(`[infra] ${l}\n`));
  const venv = schemathesisVenv(env);
  const binary = schemathesisBinary(env);
  if (schemathesisInstalled(env)) return { binary, installed: false };
  fs.mkdirSync(path.dirname(venv), { recursive: true });
  return withLock(`${venv}.lock`, `schemathesis ${SCHEMATHESIS_VERSION}`, log, async () => {
    if (schemathesisInstalled(env)) return { binary, installed: false };
    const python = env.PYTHON || 'python3';
    const step = `installing schemathesis ${SCHEMATHESIS_VERSION} into ${venv}`;
    const run = async (cmd: string, args: string[]): Promise<void> => {
      try {
        await execFileP(cmd, args, {
          env: { ...process.env, PIP_DISABLE_PIP_VERSION_CHECK: '1' },
          maxBuffer: 64 << 20,
        });
      } catch (err) {
        const e = err as { stderr?: string; message: string };
        throw new InfraError(step, `${cmd} ${args.join(' ')}: ${(e.stderr || e.message).trim().slice(-2000)}`);
      }
    };
    log(`${step} (${python} -m venv, pip from PyPI)`);
    fs.rmSync(venv, { recursive: true, force: true });
    await run(python, ['-c', 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)']).catch(() => {
      throw new InfraError(step, `${python} is missing or older than Python 3.9 (set PYTHON to another interpreter)`);
    });
    await run(python, ['-m', 'venv', venv]).catch((err: unknown) => {
      throw new InfraError(step, `${String(err)} (Debian and Ubuntu: apt install python3-venv)`);
    });
    await run(path.join(venv, 'bin', 'python'), [
      '-m',
      'pip',
      'install',
      '--quiet',
      `schemathesis==${SCHEMATHESIS_VERSION}`,
    ]);
    await run(binary, ['--version']);
    fs.writeFileSync(markerOf(venv), `${new Date().toISOString()}\n`);
    return { binary, installed: true };
  });
}
