/**
 * Store benchmark: point operations by `_id` on the embedded store (FerretDB 1.24 over SQLite), with
 * the wrapper's `_id` index (infra/ferretdb/idindex.go) and, in the same run, without it
 * (`--no-id-index`, FerretDB as released) as the baseline.
 *
 * Per mode, a fresh FerretDB from the cached binary in a temp dir (stopped and removed at the end).
 * Per size (default 1k, 10k, 100k): one collection bulk-loaded with insertMany in chunks with
 * message-like documents (`_id` a string, a few short fields, a 150-byte body); the plan of the
 * `_id` lookup as `ferretdb-embedded explain` prints it (with the index: waited for until it says
 * `SEARCH … USING INDEX`); then, one request at a time, after a warm-up on other documents:
 * `findOne({ _id })`, `updateOne({ _id }, { $set })`, `deleteOne({ _id })` on distinct random
 * existing documents, and `insertOne` of new documents as the reference (an insert never scans).
 * Reported: median and p95 per operation, and the ratio largest ÷ smallest size per operation
 * (flat means O(log n)).
 *
 * Run: npm run bench:store [-- --sizes 1000,10000,100000 --samples 200 --baseline-samples 20]
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { MongoClient, type Collection } from 'mongodb';
import { ensureBinaries } from '../tools/infra/binaries';
import { startFerretDb, type FerretDb } from '../tools/infra/servers';
import { flags, fmt, int, median, onInterrupt, percentile, runMain, table, writeResults } from './lib/report';

const args = flags('store', {
  sizes: { type: 'string', default: '1000,10000,100000', help: 'documents in the collection, one case each' },
  samples: { type: 'string', default: '200', help: 'timed requests per operation and size, with the index' },
  'baseline-samples': {
    type: 'string',
    default: '20',
    help: 'the same without the index (each one scans: at 100k ~0.3 s a find, ~1 s an update or delete)',
  },
  warmup: {
    type: 'string',
    default: '20',
    help: 'untimed findOne + updateOne pairs (on other documents) before each size is measured',
  },
  chunk: { type: 'string', default: '1000', help: 'documents per insertMany when loading' },
  seed: { type: 'string', default: '1', help: 'seed of the random _id choice' },
  'skip-baseline': { type: 'boolean', default: false, help: 'measure only with the index' },
});

const sizes = args.sizes.split(',').map((s) => int('sizes', s.trim()));
const samples = int('samples', args.samples);
const baselineSamples = int('baseline-samples', args['baseline-samples']);
const warmup = int('warmup', args.warmup, 0);
const chunk = int('chunk', args.chunk);

const OPS = ['findOne', 'updateOne', 'deleteOne', 'insertOne'] as const;
type Op = (typeof OPS)[number];
type Mode = 'index' | 'no index';

interface PointDoc {
  _id: string;
  wabaId: string;
  to: string;
  status: string;
  attempt: number;
  createdAt: number;
  body: string;
}

interface Case {
  mode: Mode;
  docs: number;
  loadMs: number;
  /** SQLite's plan for the find by `_id`, as `ferretdb-embedded explain` prints it. */
  plan: string;
  /** Latencies in ms, per operation. */
  ms: Record<Op, number[]>;
}

const say = (line: string): void => {
  process.stderr.write(`[bench] ${line}\n`);
};
const run = promisify(execFile);
const BODY = 'x'.repeat(150);

const doc = (docs: number, i: number): PointDoc => ({
  _id: `msg-${docs}-${i}`,
  wabaId: `waba-${i % 20}`,
  to: `1555${String(i % 100_000).padStart(7, '0')}`,
  status: 'queued',
  attempt: 0,
  createdAt: 1_700_000_000_000 + i,
  body: BODY,
});

/** mulberry32: a small seeded generator, so every run picks the same documents. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `count` distinct integers from [0, n) (partial Fisher–Yates). */
function distinct(n: number, count: number, rnd: () => number): number[] {
  const pick = new Map<number, number>();
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    const j = i + Math.floor(rnd() * (n - i));
    const vj = pick.get(j) ?? j;
    pick.set(j, pick.get(i) ?? i);
    out.push(vj);
  }
  return out;
}

async function timed(times: number[], fn: () => Promise<unknown>): Promise<void> {
  const t0 = performance.now();
  await fn();
  times.push(performance.now() - t0);
}

async function findPlan(binary: string, sqliteDir: string, db: string, collection: string): Promise<string> {
  const { stdout } = await run(binary, ['explain', '--sqlite-dir', sqliteDir, '--db', db, '--collection', collection]);
  return /^find: (.*)$/m.exec(stdout)?.[1] ?? `(no plan in ${JSON.stringify(stdout)})`;
}

async function measureMode(binary: string, mode: Mode, tmpDir: string): Promise<Case[]> {
  const sqliteDir = path.join(tmpDir, mode === 'index' ? 'index' : 'no-index');
  const server: FerretDb = await startFerretDb({ binary, sqliteDir, logDir: tmpDir, idIndex: mode === 'index' });
  const unregister = onInterrupt(() => server.stop());
  const client = new MongoClient(server.uri, { maxPoolSize: 4 });
  const n = mode === 'index' ? samples : baselineSamples;
  const cases: Case[] = [];
  try {
    await client.connect();
    const db = client.db('bench_store');
    for (const docs of sizes) {
      if (2 * n + warmup > docs) throw new Error(`--sizes ${docs} is too small for ${n} updates and deletes`);
      const name = `points_${docs}`;
      const coll: Collection<PointDoc> = db.collection<PointDoc>(name);
      const t0 = performance.now();
      for (let from = 0; from < docs; from += chunk) {
        const batch = Array.from({ length: Math.min(chunk, docs - from) }, (_, k) => doc(docs, from + k));
        await coll.insertMany(batch, { ordered: false });
      }
      const loadMs = performance.now() - t0;

      let plan = await findPlan(binary, sqliteDir, 'bench_store', name);
      if (mode === 'index') {
        const deadline = Date.now() + 30_000;
        while (!/^SEARCH .* USING INDEX coexist\$id\$/.test(plan)) {
          if (Date.now() > deadline) throw new Error(`no _id index on ${name} after 30 s; plan: ${plan}`);
          await new Promise((r) => setTimeout(r, 100));
          plan = await findPlan(binary, sqliteDir, 'bench_store', name);
        }
      }
      say(`${mode}, ${docs} docs: loaded in ${fmt(loadMs / 1000, 1)} s; plan: ${plan}`);

      const rnd = random(int('seed', args.seed) + docs);
      const picked = distinct(docs, 2 * n + warmup, rnd);
      const updates = picked.slice(0, n);
      const deletes = picked.slice(n, 2 * n);
      const finds = Array.from({ length: n }, () => Math.floor(rnd() * docs));
      for (const i of picked.slice(2 * n)) {
        await coll.findOne({ _id: doc(docs, i)._id });
        await coll.updateOne({ _id: doc(docs, i)._id }, { $set: { status: 'warm' } });
      }

      const ms: Record<Op, number[]> = { findOne: [], updateOne: [], deleteOne: [], insertOne: [] };
      for (const i of finds) {
        await timed(ms.findOne, async () => {
          if (!(await coll.findOne({ _id: doc(docs, i)._id }))) throw new Error(`findOne: msg-${docs}-${i} not found`);
        });
      }
      for (const [k, i] of updates.entries()) {
        await timed(ms.updateOne, async () => {
          const res = await coll.updateOne({ _id: doc(docs, i)._id }, { $set: { status: 'sent', attempt: k + 1 } });
          if (res.modifiedCount !== 1) throw new Error(`updateOne: msg-${docs}-${i} modified ${res.modifiedCount}`);
        });
      }
      for (const i of deletes) {
        await timed(ms.deleteOne, async () => {
          const res = await coll.deleteOne({ _id: doc(docs, i)._id });
          if (res.deletedCount !== 1) throw new Error(`deleteOne: msg-${docs}-${i} deleted ${res.deletedCount}`);
        });
      }
      for (let k = 0; k < n; k++) await timed(ms.insertOne, () => coll.insertOne(doc(docs, docs + k)));
      cases.push({ mode, docs, loadMs, plan, ms });
      say(
        `${mode}, ${docs} docs: ` +
          OPS.map((op) => `${op} ${fmt(median(ms[op]), 2)} ms (p95 ${fmt(percentile(ms[op], 95), 2)})`).join(', '),
      );
    }
  } finally {
    await client.close().catch(() => undefined);
    await server.stop();
    unregister();
  }
  return cases;
}

async function main(): Promise<void> {
  const { ferretdb: binary } = await ensureBinaries({ log: say });
  const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'coexist-relay-bench-store-'));
  const unregister = onInterrupt(async () => fs.rmSync(tmpDir, { recursive: true, force: true }));
  const cases: Case[] = [];
  const started = Date.now();
  try {
    const modes: Mode[] = args['skip-baseline'] ? ['index'] : ['index', 'no index'];
    for (const mode of modes) cases.push(...(await measureMode(binary, mode, tmpDir)));
  } finally {
    fs.rmSync(tmpDir, { recursive: true, force: true });
    unregister();
  }

  const rows = cases.flatMap((c) =>
    OPS.map((op) => [c.mode, c.docs, op, c.ms[op].length, fmt(median(c.ms[op]), 2), fmt(percentile(c.ms[op], 95), 2)]),
  );
  process.stdout.write(`\n${table(['_id index', 'docs', 'operation', 'n', 'median ms', 'p95 ms'], rows)}\n`);

  const small = Math.min(...sizes);
  const large = Math.max(...sizes);
  const at = (mode: Mode, docs: number, op: Op): number[] | undefined =>
    cases.find((c) => c.mode === mode && c.docs === docs)?.ms[op];
  const ratio = (mode: Mode, op: Op, p: number): number => {
    const a = at(mode, large, op);
    const b = at(mode, small, op);
    return a && b ? percentile(a, p) / percentile(b, p) : NaN;
  };
  const ratios = OPS.map((op) => {
    const withIdx = at('index', large, op);
    const without = at('no index', large, op);
    return [
      op,
      `${fmt(ratio('index', op, 50), 2)}×`,
      `${fmt(ratio('index', op, 95), 2)}×`,
      `${fmt(ratio('no index', op, 50), 1)}×`,
      withIdx && without ? `${fmt(median(without) / median(withIdx), 0)}×` : 'n/a',
    ];
  });
  process.stdout.write(
    `\n${table(
      [
        'operation',
        `index: median ${large}÷${small}`,
        `index: p95 ${large}÷${small}`,
        `no index: median ${large}÷${small}`,
        `at ${large}: no index ÷ index`,
      ],
      ratios,
    )}\n`,
  );
  const flat = OPS.filter((op) => op !== 'insertOne').every((op) => ratio('index', op, 50) <= 2);
  process.stdout.write(
    `\nwith the index, point operations ${flat ? 'stay' : 'do NOT stay'} within 2× from ${small} to ${large} documents (median); ${fmt((Date.now() - started) / 1000, 0)} s\n`,
  );

  const file = writeResults('store', {
    params: { sizes, samples, baselineSamples, warmup, chunk, seed: args.seed },
    cases: cases.map((c) => ({
      mode: c.mode,
      docs: c.docs,
      loadMs: c.loadMs,
      plan: c.plan,
      ops: Object.fromEntries(
        OPS.map((op) => [op, { n: c.ms[op].length, medianMs: median(c.ms[op]), p95Ms: percentile(c.ms[op], 95) }]),
      ),
    })),
  });
  say(`results: ${file}`);
}

runMain(main);
