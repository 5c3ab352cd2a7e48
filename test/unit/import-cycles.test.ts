import fs from 'node:fs';
import path from 'node:path';

/**
 * No import circles in the product code, type imports included (ESLint's `import-x/no-cycle` does
 * not follow `import type`). A circle of types still couples its modules: each one's change
 * recompiles and re-reads the others, and workflow code reached through one pulls the rest in.
 * The launchers start workflows through the signatures in src/contracts.ts, never by
 * importing workflow code, which is what keeps `workflow → activities → launchers` from closing.
 */
const root = path.resolve(__dirname, '..', '..');
const ROOTS = ['src'];
const IMPORT = /(?:^|\n)\s*(?:import|export)\s[^;'"]*?from\s+['"](\.[^'"]+)['"]/g;

function productFiles(): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts')) out.push(path.relative(root, p));
    }
  };
  for (const r of ROOTS) walk(path.join(root, r));
  return out;
}

/** Relative imports (value and type) of each file, resolved to files of the set. */
export function importGraph(sources: Record<string, string>): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const [file, text] of Object.entries(sources)) {
    const deps = new Set<string>();
    for (const m of text.matchAll(IMPORT)) {
      const target = path.normalize(path.join(path.dirname(file), m[1]!));
      const hit = [`${target}.ts`, path.join(target, 'index.ts')].find((c) => c in sources);
      if (hit) deps.add(hit);
    }
    graph.set(file, [...deps]);
  }
  return graph;
}

/** Strongly connected components of more than one file (or a file importing itself): the circles. */
export function circles(graph: Map<string, string[]>): string[][] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const component: string[] = [];
    for (let w = stack.pop()!; ; w = stack.pop()!) {
      onStack.delete(w);
      component.push(w);
      if (w === v) break;
    }
    if (component.length > 1 || (graph.get(v) ?? []).includes(v)) found.push(component.sort());
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found;
}

describe('import circles', () => {
  it('finds a circle made of type imports only, and one through an index file', () => {
    const typeOnly = importGraph({
      'src/a.ts': "import type { B } from './b';",
      'src/b.ts': "import type { A } from './a';\nexport type B = 1;",
      'src/c.ts': "import { x } from './d';",
      'src/d/index.ts': "export { y } from '../c';",
      'src/e.ts': "import { z } from './f';",
      'src/f.ts': 'export const z = 1;',
    });
    expect(circles(typeOnly)).toEqual([
      ['src/a.ts', 'src/b.ts'],
      ['src/c.ts', 'src/d/index.ts'],
    ]);
  });

  it('the product code has none, type imports included', () => {
    const files = productFiles();
    expect(files.length).toBeGreaterThan(50);
    const sources = Object.fromEntries(files.map((f) => [f, fs.readFileSync(path.join(root, f), 'utf8')]));
    expect(circles(importGraph(sources))).toEqual([]);
  });
});
