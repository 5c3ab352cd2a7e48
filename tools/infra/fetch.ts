/**
 * `npm run infra`: makes sure the Temporal CLI and FerretDB binaries are in the user-level cache
 * (see binaries.ts), building them with Go when missing. Also run before `dev`, `test` and `bench`.
 * With `--schemathesis` (`npm test` passes it), also installs the pinned schemathesis, the contract
 * test's API fuzzer, into a virtualenv there.
 * Prints what it did and how long it took on stderr; with `--paths`, prints the two binary paths
 * on stdout (temporal first) for scripts.
 */
import { ensureBinaries, InfraError } from './binaries';
import { ensureSchemathesis } from './schemathesis';

async function main(): Promise<void> {
  const started = process.hrtime.bigint();
  const { temporal, ferretdb, built, waited } = await ensureBinaries();
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  if (built.length > 0) {
    process.stderr.write(`[infra] built ${built.join(' and ')}; total ${(ms / 1000).toFixed(1)} s\n`);
  } else if (waited.length > 0) {
    process.stderr.write(
      `[infra] ${waited.join(' and ')} built by another process; waited ${(ms / 1000).toFixed(1)} s\n`,
    );
  } else {
    process.stderr.write(`[infra] binaries cached (checked in ${ms.toFixed(0)} ms)\n`);
  }
  process.stderr.write(`[infra]   temporal: ${temporal}\n[infra]   ferretdb: ${ferretdb}\n`);
  if (process.argv.includes('--schemathesis')) {
    // The contract test's API fuzzer (PyPI); see schemathesis.ts.
    const st = await ensureSchemathesis();
    process.stderr.write(`[infra]   schemathesis: ${st.binary}${st.installed ? ' (installed now)' : ''}\n`);
  }
  if (process.argv.includes('--paths')) process.stdout.write(`${temporal}\n${ferretdb}\n`);
}

main().catch((err: unknown) => {
  if (err instanceof InfraError) {
    process.stderr.write(`[infra] ${err.message}\n`);
  } else {
    process.stderr.write(
      `[infra] unexpected failure: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
  }
  process.exitCode = 1;
});
