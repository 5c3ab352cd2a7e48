/**
 * `npm run openapi`: writes `openapi.json` at the repository root from `src/http/openapi.ts`,
 * formatted by Prettier with the repository's settings (so `prettier --check .` passes on it).
 * test/unit/openapi.test.ts fails when the committed file differs from {@link renderCommitted}.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { renderOpenApi } from '../src/http/openapi';
import { serviceEventCatalog } from '../src/relay/events';

const ROOT = path.resolve(__dirname, '..');
export const OPENAPI_FILE = path.join(ROOT, 'openapi.json');

/** The text `openapi.json` must hold. Prettier runs as its CLI (its API needs ESM, which Jest lacks). */
export function renderCommitted(): string {
  return execFileSync(
    process.execPath,
    [path.join(ROOT, 'node_modules', 'prettier', 'bin', 'prettier.cjs'), '--stdin-filepath', OPENAPI_FILE],
    { input: renderOpenApi(), encoding: 'utf8', cwd: ROOT },
  );
}

export const EVENTS_FILE = path.join(ROOT, 'events.schema.json');

/** The text `events.schema.json` (the service event catalog) must hold. */
export function renderEventsCatalog(): string {
  return execFileSync(
    process.execPath,
    [path.join(ROOT, 'node_modules', 'prettier', 'bin', 'prettier.cjs'), '--stdin-filepath', EVENTS_FILE],
    { input: `${JSON.stringify(serviceEventCatalog(), null, 2)}\n`, encoding: 'utf8', cwd: ROOT },
  );
}

if (require.main === module) {
  fs.writeFileSync(OPENAPI_FILE, renderCommitted());
  fs.writeFileSync(EVENTS_FILE, renderEventsCatalog());
  process.stderr.write(`wrote ${OPENAPI_FILE} and ${EVENTS_FILE}\n`);
}
