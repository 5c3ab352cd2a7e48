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
 * `--synchronous full,normal` measures the index mode once per SQLite `synchronous` setting of the
 * wrapper, each on its own fresh FerretDB, all running at once: every timed request goes to each of
 * them in turn (the order rotating), so the machine's other load falls on all alike. It adds, per
 * size and operation, the median of each setting ÷ the median of the last one listed (`findOne`
 * commits nothing: its ratio shows what is noise). The no-index baseline runs once, with the last
 * setting.
 *
 * Run: npm run bench:store [-- --sizes 1000,10000,100000 --samples 200 --baseline-samples 20
 *      --synchronous full,normal]
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { MongoClient, type Collection } from 'mongodb';
import { ensureBinaries } from '../tools/infra/binaries';
import { parseSqliteSynchronous, startFerretDb, type FerretDb, type SqliteSynchronous } from '../tools/infra/servers';
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
  synchronous: {
    type: 'string',
    default: 'normal',
    help:
      "FerretDB's SQLite synchronous, comma-separated (full,normal): the index mode once per setting; " +
      'a ratio table against the last one listed',
  },
});

const sizes = args.sizes.split(',').map((s) => int('sizes', s.trim()));
const samples = int('samples', args.samples);
const baselineSamples = int('baseline-samples', args['baseline-samples']);
const warmup = int('warmup', args.warmup, 0);
const chunk = int('chunk', args.chunk);
const syncs: SqliteSynchronous[] = [
  ...new Set(args.synchronous.split(',').map((s) => parseSqliteSynchronous(s.trim(), '--synchronous') ?? 'normal')),
];
/** The setting the ratios divide by, and the one the no-index baseline runs with. */
const reference = syncs[syncs.length - 1] ?? 'normal';

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
  sync: SqliteSynchronous;
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

interface Target {
  sync: SqliteSynchronous;
  sqliteDir: string;
  server: FerretDb;
  client: MongoClient;
}

/**
 * One mode, one FerretDB per `synchronous` setting, all running at once. Each size is loaded into
 * each (chunk by chunk, alternating), then every timed request goes to each server in turn (the
 * order rotating per request), so a change in the machine's other load falls on every setting alike.
 */
async function measureMode(
  binary: string,
  mode: Mode,
  modeSyncs: SqliteSynchronous[],
  tmpDir: string,
): Promise<Case[]> {
  const targets: Target[] = [];
  const unregister = onInterrupt(async () => {
    await Promise.all(targets.map((t) => t.server.stop()));
  });
  const n = mode === 'index' ? samples : baselineSamples;
  const cases: Case[] = [];
  try {
    for (const sync of modeSyncs) {
      const sqliteDir = path.join(tmpDir, `${mode === 'index' ? 'index' : 'no-index'}-${sync}`);
      const server = await startFerretDb({
        binary,
        sqliteDir,
        logDir: tmpDir,
        idIndex: mode === 'index',
        synchronous: sync,
      });
      const client = new MongoClient(server.uri, { maxPoolSize: 4 });
      targets.push({ sync, sqliteDir, server, client });
      await client.connect();
    }
    for (const docs of sizes) {
      if (2 * n + warmup > docs) throw new Error(`--sizes ${docs} is too small for ${n} updates and deletes`);
      const name = `points_${docs}`;
      const colls = targets.map((t) => t.client.db('bench_store').collection<PointDoc>(name));
      // Loaded chunk by chunk, each chunk into every target in turn (timed per target).
      const loadMs = targets.map(() => 0);
      for (let from = 0; from < docs; from += chunk) {
        const batch = Array.from({ length: Math.min(chunk, docs - from) }, (_, k) => doc(docs, from + k));
        for (const [t, coll] of colls.entries()) {
          const t0 = performance.now();
          await coll.insertMany(batch, { ordered: false });
          loadMs[t]! += performance.now() - t0;
        }
      }
      const perTarget = new Map<Target, Case>();
      for (const [t, target] of targets.entries()) {
        let plan = await findPlan(binary, target.sqliteDir, 'bench_store', name);
        if (mode === 'index') {
          const deadline = Date.now() + 30_000;
          while (!/^SEARCH .* USING INDEX coexist\$id\$/.test(plan)) {
            if (Date.now() > deadline) throw new Error(`no _id index on ${name} after 30 s; plan: ${plan}`);
            await new Promise((r) => setTimeout(r, 100));
            plan = await findPlan(binary, target.sqliteDir, 'bench_store', name);
          }
        }
        say(`${mode}, ${target.sync}, ${docs} docs: loaded in ${fmt(loadMs[t]! / 1000, 1)} s; plan: ${plan}`);
        const ms: Record<Op, number[]> = { findOne: [], updateOne: [], deleteOne: [], insertOne: [] };
        perTarget.set(target, { mode, sync: target.sync, docs, loadMs: loadMs[t]!, plan, ms });
      }

      const rnd = random(int('seed', args.seed) + docs);
      const picked = distinct(docs, 2 * n + warmup, rnd);
      const updates = picked.slice(0, n);
      const deletes = picked.slice(n, 2 * n);
      const finds = Array.from({ length: n }, () => Math.floor(rnd() * docs));
      for (const coll of colls) {
        for (const i of picked.slice(2 * n)) {
          await coll.findOne({ _id: doc(docs, i)._id });
          await coll.updateOne({ _id: doc(docs, i)._id }, { $set: { status: 'warm' } });
        }
      }

      /** Runs `fn` once against each target, starting with a different one each call. */
      let turn = 0;
      const eachTarget = async (op: Op, fn: (coll: Collection<PointDoc>) => Promise<void>): Promise<void> => {
        for (let j = 0; j < targets.length; j++) {
          const t = (turn + j) % targets.length;
          await timed(perTarget.get(targets[t]!)!.ms[op], () => fn(colls[t]!));
        }
        turn++;
      };
      for (const i of finds) {
        await eachTarget('findOne', async (coll) => {
          if (!(await coll.findOne({ _id: doc(docs, i)._id }))) throw new Error(`findOne: msg-${docs}-${i} not found`);
        });
      }
      for (const [k, i] of updates.entries()) {
        await eachTarget('updateOne', async (coll) => {
          const res = await coll.updateOne({ _id: doc(docs, i)._id }, { $set: { status: 'sent', attempt: k + 1 } });
          if (res.modifiedCount !== 1) throw new Error(`updateOne: msg-${docs}-${i} modified ${res.modifiedCount}`);
        });
      }
      for (const i of deletes) {
        await eachTarget('deleteOne', async (coll) => {
          const res = await coll.deleteOne({ _id: doc(docs, i)._id });
          if (res.deletedCount !== 1) throw new Error(`deleteOne: msg-${docs}-${i} deleted ${res.deletedCount}`);
        });
      }
      for (let k = 0; k < n; k++) {
        await eachTarget('insertOne', async (coll) => {
          await coll.insertOne(doc(docs, docs + k));
        });
      }
      for (const target of targets) {
        const c = perTarget.get(target)!;
        cases.push(c);
        say(
          `${mode}, ${target.sync}, ${docs} docs: ` +
            OPS.map((op) => `${op} ${fmt(median(c.ms[op]), 2)} ms (p95 ${fmt(percentile(c.ms[op], 95), 2)})`).join(
              ', ',
            ),
        );
      }
    }
  } finally {
    for (const t of targets) {
      await t.client.close().catch(() => undefined);
      await t.server.stop();
    }
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
    cases.push(...(await measureMode(binary, 'index', syncs, tmpDir)));
    if (!args['skip-baseline']) cases.push(...(await measureMode(binary, 'no index', [reference], tmpDir)));
  } finally {
    fs.rmSync(tmpDir, { recursive: true, force: true });
    unregister();
  }

  const rows = cases.flatMap((c) =>
    OPS.map((op) => [
      c.mode,
      c.sync,
      c.docs,
      op,
      c.ms[op].length,
      fmt(median(c.ms[op]), 2),
      fmt(percentile(c.ms[op], 95), 2),
    ]),
  );
  process.stdout.write(
    `\n${table(['_id index', 'synchronous', 'docs', 'operation', 'n', 'median ms', 'p95 ms'], rows)}\n`,
  );

  const small = Math.min(...sizes);
  const large = Math.max(...sizes);
  const at = (mode: Mode, docs: number, op: Op, sync: SqliteSynchronous = reference): number[] | undefined =>
    cases.find((c) => c.mode === mode && c.sync === sync && c.docs === docs)?.ms[op];
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
  for (const other of syncs.filter((s) => s !== reference)) {
    const syncRows = sizes.flatMap((docs) => {
      const load = (s: SqliteSynchronous): number | undefined =>
        cases.find((c) => c.mode === 'index' && c.sync === s && c.docs === docs)?.loadMs;
      const [lo, lr] = [load(other), load(reference)];
      return [
        ...OPS.map((op) => {
          const [o, r] = [at('index', docs, op, other), at('index', docs, op, reference)];
          return [
            docs,
            op,
            o ? fmt(median(o), 2) : 'n/a',
            r ? fmt(median(r), 2) : 'n/a',
            o && r ? `${fmt(median(o) / median(r), 2)}×` : 'n/a',
          ];
        }),
        [
          docs,
          `load (insertMany of ${chunk})`,
          lo === undefined ? 'n/a' : fmt(lo, 0),
          lr === undefined ? 'n/a' : fmt(lr, 0),
          lo && lr ? `${fmt(lo / lr, 2)}×` : 'n/a',
        ],
      ];
    });
    process.stdout.write(
      `\nwith the index, same run: synchronous ${other} against ${reference}\n${table(
        ['docs', 'operation', `${other}: median ms`, `${reference}: median ms`, `${other} ÷ ${reference}`],
        syncRows,
      )}\n`,
    );
  }
  const flat = OPS.filter((op) => op !== 'insertOne').every((op) => ratio('index', op, 50) <= 2);
  process.stdout.write(
    `\nwith the index, point operations ${flat ? 'stay' : 'do NOT stay'} within 2× from ${small} to ${large} documents (median); ${fmt((Date.now() - started) / 1000, 0)} s\n`,
  );

  const file = writeResults('store', {
    params: { sizes, samples, baselineSamples, warmup, chunk, seed: args.seed, synchronous: syncs },
    cases: cases.map((c) => ({
      mode: c.mode,
      synchronous: c.sync,
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
