/**
 * Second half of `npm run build` (after `tsc -p tsconfig.build.json`): bundles the workflow code,
 * as the worker would at start, into dist/workflow-bundle.js (or the path given as the only
 * argument), and once more with the tracing interceptors into workflow-bundle-tracing.js next to
 * it (the one a worker with OTEL_EXPORTER_OTLP_ENDPOINT loads). The compiled worker loads that file (`workflowBundle: { codePath }`, see
 * `prebuiltBundlePath` in src/worker.ts), so a production start skips webpack and runs exactly the
 * code that was built and tested.
 */
import fs from 'node:fs';
import path from 'node:path';
import { BUILT_BUNDLE_FILE, BUILT_TRACING_BUNDLE_FILE, bundleWorkflows } from '../src/worker';

async function main(): Promise<void> {
  const out = path.resolve(process.argv[2] ?? path.join(__dirname, '..', 'dist', BUILT_BUNDLE_FILE));
  // The tracing bundle goes next to it: workflow-bundle.js → workflow-bundle-tracing.js.
  const tracingOut = path.join(path.dirname(out), BUILT_TRACING_BUNDLE_FILE);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  for (const [file, tracing] of [
    [out, false],
    [tracingOut, true],
  ] as const) {
    const started = Date.now();
    const { code } = await bundleWorkflows({ tracing });
    // Written aside and renamed, so a worker starting meanwhile never reads half a bundle.
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, code);
    fs.renameSync(tmp, file);
    const kib = Math.round(Buffer.byteLength(code) / 1024);
    process.stdout.write(
      `workflow bundle${tracing ? ' (tracing)' : ''}: ${path.relative(process.cwd(), file)} (${kib} KiB, ${Date.now() - started} ms)\n`,
    );
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`build-workflows: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
