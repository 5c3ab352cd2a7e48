import fs from 'node:fs';
import path from 'node:path';
import { ENV_VARIABLES } from '../../src/config';

/** docs/configuration.md is the full table: one row per variable the service reads, and no other. */
const doc = fs.readFileSync(path.join(__dirname, '../../docs/configuration.md'), 'utf8');
const documented = [...doc.matchAll(/^\| `([A-Z][A-Z0-9_]+)`/gm)].map((m) => m[1]!);

describe('docs/configuration.md', () => {
  it('documents every environment variable src/config.ts reads, once', () => {
    const missing = ENV_VARIABLES.filter((name) => !documented.includes(name));
    const twice = documented.filter((name, i) => documented.indexOf(name) !== i);
    expect({ missing, twice }).toEqual({ missing: [], twice: [] });
  });

  it('documents no variable the service does not read', () => {
    expect(documented.filter((name) => !(ENV_VARIABLES as string[]).includes(name))).toEqual([]);
  });
});
