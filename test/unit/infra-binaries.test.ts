import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  FERRETDB_WRAPPER_DIR,
  FERRETDB_WRAPPER_FILES,
  cacheDir,
  compareGoVersions,
  ferretdbBinary,
  ferretdbWrapperHash,
  goCacheDirs,
  goDirective,
  parseGoVersion,
  temporalBinary,
} from '../../tools/infra/binaries';
import { parseSqliteSynchronous } from '../../tools/infra/servers';

const home = '/home/dev';

describe('cacheDir', () => {
  it('prefers COEXIST_RELAY_CACHE, then XDG_CACHE_HOME, then ~/.cache', () => {
    expect(cacheDir({ COEXIST_RELAY_CACHE: '/c', XDG_CACHE_HOME: '/x' }, home)).toBe('/c');
    expect(cacheDir({ XDG_CACHE_HOME: '/x' }, home)).toBe('/x/coexist-relay');
    expect(cacheDir({}, home)).toBe('/home/dev/.cache/coexist-relay');
  });

  it('treats empty values as unset and ignores a relative XDG_CACHE_HOME', () => {
    expect(cacheDir({ COEXIST_RELAY_CACHE: '', XDG_CACHE_HOME: '/x' }, home)).toBe('/x/coexist-relay');
    expect(cacheDir({ XDG_CACHE_HOME: '' }, home)).toBe('/home/dev/.cache/coexist-relay');
    expect(cacheDir({ XDG_CACHE_HOME: 'rel/cache' }, home)).toBe('/home/dev/.cache/coexist-relay');
  });

  it('resolves a relative COEXIST_RELAY_CACHE against the current directory', () => {
    expect(cacheDir({ COEXIST_RELAY_CACHE: 'cache' }, home)).toBe(path.resolve('cache'));
  });
});

describe('binary and Go cache paths', () => {
  const env = { COEXIST_RELAY_CACHE: '/c' };

  it('puts versioned binaries under <cache>/bin and Go caches under <cache>/go', () => {
    expect(temporalBinary(env)).toBe('/c/bin/temporal-cli-v1.5.1');
    expect(ferretdbBinary(env)).toBe(`/c/bin/ferretdb-embedded-${ferretdbWrapperHash()}`);
    expect(ferretdbWrapperHash()).toMatch(/^[0-9a-f]{12}$/);
    expect(goCacheDirs(env)).toEqual({ modCache: '/c/go/mod', buildCache: '/c/go/build' });
    expect(temporalBinary({ XDG_CACHE_HOME: '/x' }, home)).toBe('/x/coexist-relay/bin/temporal-cli-v1.5.1');
  });

  it('names a new FerretDB binary when the wrapper sources change', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferret-wrapper-'));
    try {
      for (const f of FERRETDB_WRAPPER_FILES) fs.copyFileSync(path.join(FERRETDB_WRAPPER_DIR, f), path.join(dir, f));
      expect(ferretdbWrapperHash(dir)).toBe(ferretdbWrapperHash());
      fs.appendFileSync(path.join(dir, 'main.go'), '\n// changed\n');
      expect(ferretdbWrapperHash(dir)).not.toBe(ferretdbWrapperHash());
      expect(ferretdbBinary(env, dir)).not.toBe(ferretdbBinary(env));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('Go versions', () => {
  it('parses go env / go.mod spellings', () => {
    expect(parseGoVersion('go1.26.8')).toEqual([1, 26, 8]);
    expect(parseGoVersion('1.25.0')).toEqual([1, 25, 0]);
    expect(parseGoVersion('1.24')).toEqual([1, 24, 0]);
    expect(parseGoVersion('go1.25rc1')).toEqual([1, 25, 0]);
    expect(parseGoVersion('devel go1.26-abcdef')).toEqual([1, 26, 0]);
    expect(parseGoVersion('nonsense')).toBeUndefined();
  });

  it('compares versions and reads the go directive', () => {
    expect(compareGoVersions([1, 26, 8], [1, 25, 0])).toBeGreaterThan(0);
    expect(compareGoVersions([1, 24, 9], [1, 25, 0])).toBeLessThan(0);
    expect(compareGoVersions([1, 25, 0], [1, 25, 0])).toBe(0);
    expect(goDirective('module m\n\ngo 1.24\n\nrequire x v1\n')).toBe('1.24');
    expect(goDirective('module m\ngo 1.25.0\ntoolchain go1.25.3\n')).toBe('1.25.0');
    expect(goDirective(fs.readFileSync(path.join(FERRETDB_WRAPPER_DIR, 'go.mod'), 'utf8'))).toBe('1.24');
  });
});

describe("the launchers' SQLite synchronous choice", () => {
  it('leaves an absent or empty value to the wrapper, reads normal and full in any case, refuses the rest', () => {
    expect(parseSqliteSynchronous(undefined, 'X')).toBeUndefined();
    expect(parseSqliteSynchronous('', 'X')).toBeUndefined();
    expect(parseSqliteSynchronous('normal', 'X')).toBe('normal');
    expect(parseSqliteSynchronous('FULL', 'X')).toBe('full');
    expect(() => parseSqliteSynchronous('off', 'DEV_SQLITE_SYNCHRONOUS')).toThrow(
      /DEV_SQLITE_SYNCHRONOUS.*normal or full/,
    );
  });
});
