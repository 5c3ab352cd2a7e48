/**
 * Queue benchmark: the per-message queue operations of src/sending/queue.store.ts on the embedded
 * store (FerretDB 1.24 over SQLite, with the wrapper's `_id` index), while the queue holds 1k, 10k
 * and 100k entries of other WABAs. Every operation there is by exact `_id`, so its cost should not
 * grow with what the queue holds.
 *
 * Per size: a fresh database; `--wabas` other WABAs share the load (`loadEmptyQueue`). Then, one
 * probe WABA at a time (each a new one, so nothing is cached): `enqueue` of 10 messages (each
 * timed), `nextEntries` of those 10 (one page), settling them (`recordSettlements`: the outcomes,
 * then the entries' deletes), `advanceHead`, `countQueued` of a WABA with 10 waiting, `isQueued`
 * by the entry's id. Baseline in the same run, on the same collection: the reads the earlier
 * layout made per message (the tail as an `_id` range sorted descending, limit 1; a message found by
 * `messageId`), which FerretDB answers by reading the whole queue.
 *
 * Reported: median and p95 per operation and size, and the ratio largest ÷ smallest size (flat
 * means the cost does not grow with the queue).
 *
 * Run: npm run bench:queue [-- --sizes 1000,10000,100000 --probes 20 --wabas 100]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connectMongo, type Collections } from '../src/adapters/store/db';
import {
  advanceHead,
  countQueued,
  enqueue,
  isQueued,
  loadEmptyQueue,
  nextEntries,
  queueEntryId,
  recordSettlements,
  type NewQueueEntry,
} from '../src/sending/queue.store';
import { ensureBinaries } from '../tools/infra/binaries';
import { startFerretDb } from '../tools/infra/servers';
import { flags, fmt, int, median, onInterrupt, percentile, runMain, table, writeResults } from './lib/report';

const args = flags('queue', {
  sizes: { type: 'string', default: '1000,10000,100000', help: 'entries of other WABAs in the queue, one case each' },
  probes: { type: 'string', default: '20', help: 'probe WABAs per size (10 messages each)' },
  wabas: { type: 'string', default: '100', help: 'other WABAs the load is spread over' },
  'baseline-samples': { type: 'string', default: '10', help: 'timed reads of the earlier layout per size' },
});
const sizes = args.sizes.split(',').map((s) => int('sizes', s.trim()));
const probes = int('probes', args.probes);
const wabas = int('wabas', args.wabas);
const baselineSamples = int('baseline-samples', args['baseline-samples']);

const OPS = ['enqueue', 'nextEntries(10)', 'settle(10)', 'advanceHead', 'countQueued(10)', 'isQueued'] as const;
const BASELINE = ['old tail read (range)', 'old isQueued (messageId)'] as const;
type Op = (typeof OPS)[number] | (typeof BASELINE)[number];

const say = (line: string): void => {
  process.stderr.write(`[bench] ${line}\n`);
};

const entry = (wabaId: string, i: number): NewQueueEntry => ({
  wabaId,
  messageId: `${wabaId}-m${i}`,
  phoneNumberId: 'p1',
  to: `1555${String(i).padStart(7, '0')}`,
  content: { type: 'text', text: { body: 'x'.repeat(150) } },
  enqueuedAt: new Date().toISOString(),
  notify: false,
});

async function timed<T>(times: number[], fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const out = await fn();
  times.push(performance.now() - t0);
  return out;
}

async function measureSize(c: Collections, docs: number): Promise<Record<Op, number[]>> {
  const ms = Object.fromEntries([...OPS, ...BASELINE].map((op) => [op, [] as number[]])) as Record<Op, number[]>;
  const t0 = performance.now();
  const per = Math.ceil(docs / wabas);
  for (let w = 0; w < wabas; w++) {
    const wabaId = `load-${docs}-${w}`;
    await loadEmptyQueue(
      c,
      wabaId,
      Array.from({ length: Math.min(per, docs - w * per) }, (_, i) => entry(wabaId, i)),
    );
  }
  const held = await c.queue.countDocuments({});
  say(`${docs}: queue loaded with ${held} entries in ${fmt((performance.now() - t0) / 1000, 1)} s`);

  for (let p = 0; p < probes; p++) {
    const wabaId = `probe-${docs}-${p}`;
    const ids: string[] = [];
    for (let i = 0; i < 10; i++) ids.push((await timed(ms.enqueue, () => enqueue(c, entry(wabaId, i)))).id);
    const page = await timed(ms['nextEntries(10)'], () => nextEntries(c, wabaId, undefined, 10));
    if (page.entries.length !== 10) throw new Error(`${wabaId}: read ${page.entries.length} entries, expected 10`);
    const queued = await timed(ms['countQueued(10)'], () => countQueued(c, wabaId));
    if (queued !== 10) throw new Error(`${wabaId}: counted ${queued}, expected 10`);
    if (!(await timed(ms.isQueued, () => isQueued(c, `${wabaId}-m3`, ids[3])))) throw new Error('isQueued: false');
    const at = new Date().toISOString();
    await timed(ms['settle(10)'], () =>
      recordSettlements(
        c,
        page.entries.map((e) => ({ messageId: e.messageId, queueId: e._id, status: 'sent' as const, at })),
      ),
    );
    await timed(ms.advanceHead, () => advanceHead(c, wabaId));
  }
  // The earlier layout's per-message reads, on the same collection.
  for (let k = 0; k < baselineSamples; k++) {
    const wabaId = `load-${docs}-${k % wabas}`;
    await timed(ms['old tail read (range)'], () =>
      c.queue
        .find({ _id: { $gt: queueEntryId(wabaId, 0), $lt: `${wabaId};` } }, { projection: { seq: 1 } })
        .sort({ _id: -1 })
        .limit(1)
        .toArray(),
    );
    await timed(ms['old isQueued (messageId)'], () =>
      c.queue.findOne({ messageId: `${wabaId}-m${k}` }, { projection: { _id: 1 } }),
    );
  }
  say(
    `${docs}: ` +
      [...OPS, ...BASELINE]
        .map((op) => `${op} ${fmt(median(ms[op]), 2)} ms (p95 ${fmt(percentile(ms[op], 95), 2)})`)
        .join(', '),
  );
  return ms;
}

async function main(): Promise<void> {
  const { ferretdb: binary } = await ensureBinaries({ log: say });
  const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'coexist-relay-bench-queue-'));
  const server = await startFerretDb({ binary, sqliteDir: path.join(tmpDir, 'db'), logDir: tmpDir });
  const unregister = onInterrupt(async () => {
    await server.stop();
    fs.rmSync(tmpDir, { recursive: true, force: true });
  });
  const results: { docs: number; ms: Record<Op, number[]> }[] = [];
  const started = Date.now();
  try {
    for (const docs of sizes) {
      const conn = await connectMongo(server.uri, `bench_queue_${docs}`);
      try {
        results.push({ docs, ms: await measureSize(conn.c, docs) });
      } finally {
        await conn.client.close();
      }
    }
  } finally {
    await server.stop();
    fs.rmSync(tmpDir, { recursive: true, force: true });
    unregister();
  }

  const all = [...OPS, ...BASELINE];
  const rows = results.flatMap((r) =>
    all.map((op) => [r.docs, op, r.ms[op].length, fmt(median(r.ms[op]), 2), fmt(percentile(r.ms[op], 95), 2)]),
  );
  process.stdout.write(`\n${table(['queued', 'operation', 'n', 'median ms', 'p95 ms'], rows)}\n`);
  const small = results.find((r) => r.docs === Math.min(...sizes))!;
  const large = results.find((r) => r.docs === Math.max(...sizes))!;
  const ratio = (op: Op) => median(large.ms[op]) / median(small.ms[op]);
  process.stdout.write(
    `\n${table(
      ['operation', `median ${large.docs}÷${small.docs}`],
      all.map((op) => [op, `${fmt(ratio(op), 2)}×`]),
    )}\n`,
  );
  const flat = OPS.every((op) => ratio(op) <= 2);
  process.stdout.write(
    `\nqueue operations ${flat ? 'stay' : 'do NOT stay'} within 2× from ${small.docs} to ${large.docs} queued (median); ${fmt((Date.now() - started) / 1000, 0)} s\n`,
  );
  const file = writeResults('queue', {
    params: { sizes, probes, wabas, baselineSamples },
    cases: results.map((r) => ({
      docs: r.docs,
      ops: Object.fromEntries(
        all.map((op) => [op, { n: r.ms[op].length, medianMs: median(r.ms[op]), p95Ms: percentile(r.ms[op], 95) }]),
      ),
    })),
  });
  say(`results: ${file}`);
}

runMain(main);
