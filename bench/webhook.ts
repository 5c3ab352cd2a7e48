/**
 * Webhook ack benchmark: latency of the hot path, signed `messages` status webhooks (one `sent` /
 * `delivered` / `read` status each, a fresh wamid per request), through the real app (signature
 * check, parse, insert-only batch into `message_statuses`, 200), against a bare Koa handler in the
 * same process that reads the body and answers 200.
 *
 * Both are driven the same way: `sendWebhook` from the simulator (signs the exact bytes, Node's
 * fetch with keep-alive), `--concurrency` requests in flight, in alternating blocks after a
 * warm-up of each, so drift and GC hit both alike. Latency = call → answer read, client side.
 *
 * Run: npm run bench:webhook [-- --requests 2000 --concurrency 1]
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import { sendWebhook } from '../tools/meta-sim/server';
import { statusPayload } from '../tools/meta-sim/payloads';
import { fmt, flags, int, mean, percentile, pool, runMain, table, writeResults } from './lib/report';
import { nowMs, say, startServers, startService, uniqueDigits, type Service, type TemporalDbMode } from './lib/stack';

const args = flags('webhook', {
  requests: { type: 'string', default: '2000', help: 'measured requests per target' },
  concurrency: { type: 'string', default: '1', help: 'requests in flight' },
  blocks: { type: 'string', default: '4', help: 'alternating blocks the requests are split into' },
  warmup: { type: 'string', default: '300', help: 'requests per target before measuring' },
  'temporal-db': { type: 'string', default: 'memory', help: 'memory | file (temp SQLite file)' },
  'mongodb-uri': { type: 'string', help: 'use this MongoDB instead of starting FerretDB' },
  'log-level': { type: 'string', default: 'warn', help: 'service log level (pino)' },
  'keep-dir': { type: 'boolean', default: false, help: 'keep the temp dir (server logs) after the run' },
});

const STATUSES = ['sent', 'delivered', 'read'] as const;

async function main(): Promise<void> {
  const requests = int('requests', args.requests);
  const concurrency = int('concurrency', args.concurrency);
  const blocks = int('blocks', args.blocks);
  const warmup = int('warmup', args.warmup, 0);
  const temporalDb = args['temporal-db'] as TemporalDbMode;
  const mongodbUri = args['mongodb-uri'] as string | undefined;
  const started = nowMs();

  const servers = await startServers('webhook', { temporalDb, mongodbUri });
  let svc: Service | undefined;
  let bare: Server | undefined;
  try {
    svc = await startService(servers, { logLevel: args['log-level'] });
    const s = svc;
    const bareApp = new Koa();
    bareApp.use(async (ctx) => {
      for await (const _chunk of ctx.req) void _chunk; // read the body, as the real endpoint must
      ctx.type = 'application/json';
      ctx.body = '{"ok":true}';
    });
    bare = await new Promise<Server>((resolve) => {
      const server = bareApp.listen(0, '127.0.0.1', () => resolve(server));
    });
    const bareUrl = `http://127.0.0.1:${(bare.address() as AddressInfo).port}/webhooks/meta`;

    const wabaId = uniqueDigits('1');
    const phone = uniqueDigits('2');
    let counter = 0;
    const targets = { app: s.webhookUrl, bare: bareUrl } as const;
    type Target = keyof typeof targets;
    const latencies: Record<Target, number[]> = { app: [], bare: [] };
    let failures = 0;

    async function run(target: Target, n: number, record: boolean): Promise<void> {
      await pool(
        Array.from({ length: n }, (_, i) => i),
        concurrency,
        async () => {
          const i = counter++;
          const body = statusPayload(wabaId, phone, [
            {
              id: `wamid.bench${i.toString(36)}${phone}`,
              status: STATUSES[i % STATUSES.length]!,
              recipientId: `1555${String(i % 1000).padStart(7, '0')}`,
            },
          ]);
          const t = nowMs();
          const r = await sendWebhook({ targetUrl: targets[target], appSecret: s.appSecret, body });
          const ms = nowMs() - t;
          if (r.status !== 200) failures++;
          if (record) latencies[target].push(ms);
        },
      );
    }

    for (const target of ['bare', 'app'] as const) await run(target, warmup, false);
    const perBlock = Math.ceil(requests / blocks);
    for (let b = 0; b < blocks; b++) {
      const order: Target[] = b % 2 === 0 ? ['app', 'bare'] : ['bare', 'app'];
      for (const target of order) await run(target, Math.min(perBlock, requests - b * perBlock), true);
    }
    const stored = await s.rt.c.messageStatuses.countDocuments({ wabaId });

    const stat = (t: Target) => ({
      n: latencies[t].length,
      p50: percentile(latencies[t], 50),
      p90: percentile(latencies[t], 90),
      p99: percentile(latencies[t], 99),
      max: Math.max(...latencies[t]),
      mean: mean(latencies[t]),
    });
    const statRow = (name: string, x: ReturnType<typeof stat>): string[] => [
      name,
      ...[x.p50, x.p90, x.p99].map((v) => fmt(v, 2)),
      fmt(x.max, 1),
      fmt(x.mean, 2),
    ];
    const app = stat('app');
    const bareStat = stat('bare');
    const notes = [
      `Temporal dev server ${temporalDb === 'file' ? 'on a temp SQLite file' : 'in memory'}; ${mongodbUri ? 'external MongoDB' : 'FerretDB 1.24 (SQLite) in a temp dir'}; app, bare handler and client in this process.`,
      `${requests} measured requests per target (${concurrency} in flight), ${blocks} alternating blocks after ${warmup} warm-up requests each; one status per webhook, fresh wamid each; signed with X-Hub-Signature-256.`,
      `message_statuses rows stored: ${stored} (expected ${warmup + requests}); non-200 answers: ${failures}.`,
    ];
    process.stdout.write(`\nWebhook ack benchmark\n${notes.map((n) => `  - ${n}`).join('\n')}\n\n`);
    process.stdout.write(
      table(
        ['target', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'mean ms'],
        [
          statRow('real app (status webhook)', app),
          statRow('bare Koa 200', bareStat),
          [
            'ratio app ÷ bare',
            `${fmt(app.p50 / bareStat.p50, 2)}×`,
            `${fmt(app.p90 / bareStat.p90, 2)}×`,
            `${fmt(app.p99 / bareStat.p99, 2)}×`,
            '-',
            `${fmt(app.mean / bareStat.mean, 2)}×`,
          ],
        ],
      ) + '\n\n',
    );
    const file = writeResults('webhook', {
      settings: { requests, concurrency, blocks, warmup, temporalDb, externalMongo: Boolean(mongodbUri) },
      notes,
      app,
      bare: bareStat,
      ratios: { p50: app.p50 / bareStat.p50, p99: app.p99 / bareStat.p99 },
      stored,
      failures,
      totalSeconds: (nowMs() - started) / 1000,
    });
    process.stdout.write(`results: ${file}\n`);
    say('done');
  } finally {
    if (bare) {
      bare.closeAllConnections();
      await new Promise((r) => bare!.close(r));
    }
    await svc?.stop();
    await servers.stop(args['keep-dir']);
  }
}

runMain(main);
