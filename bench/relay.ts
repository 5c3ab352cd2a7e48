/**
 * Relay benchmark (issue #12): webhook ack throughput and latency with forwarding on ÷ off, at the
 * mixed ingress of issue #8 (98% status webhooks, 2% `account_update`), `--concurrency` in flight.
 * Two services on the same Temporal dev server and FerretDB: one without FORWARD_TARGETS, one
 * forwarding every delivery to a local receiver (answers 204). Alternating blocks, so drift and GC
 * hit both alike. At the end it waits until the receiver has every forwarded delivery.
 *
 * Run: npm run bench:relay [-- --requests 2000 --concurrency 32]
 */
import { sendWebhook } from '../tools/meta-sim/server';
import { accountUpdatePayload, statusPayload } from '../tools/meta-sim/payloads';
import { fmt, flags, int, mean, percentile, pool, runMain, table, writeResults } from './lib/report';
import { nowMs, say, startForwardReceiver, startServers, startService, uniqueDigits, type Service } from './lib/stack';

const args = flags('relay', {
  requests: { type: 'string', default: '2000', help: 'measured requests per service' },
  concurrency: { type: 'string', default: '32', help: 'requests in flight' },
  blocks: { type: 'string', default: '4', help: 'alternating blocks' },
  warmup: { type: 'string', default: '200', help: 'requests per service before measuring' },
  'mongodb-uri': { type: 'string', help: 'use this MongoDB instead of starting FerretDB' },
});

async function main(): Promise<void> {
  const requests = int('requests', args.requests);
  const concurrency = int('concurrency', args.concurrency);
  const blocks = int('blocks', args.blocks);
  const warmup = int('warmup', args.warmup, 0);
  const mongodbUri = args['mongodb-uri'] as string | undefined;

  const receiver = await startForwardReceiver();

  const servers = await startServers('relay', mongodbUri ? { mongodbUri } : {});
  const services: Partial<Record<'off' | 'on', Service>> = {};
  try {
    services.off = await startService(servers, { logLevel: 'warn' });
    services.on = await startService(servers, {
      logLevel: 'warn',
      env: {
        FORWARD_TARGETS: receiver.forwardTargets,
      },
    });
    const phone = uniqueDigits('2');
    let counter = 0;
    const latencies: Record<'off' | 'on', number[]> = { off: [], on: [] };
    const elapsed: Record<'off' | 'on', number> = { off: 0, on: 0 };
    const failures: Record<'off' | 'on', number> = { off: 0, on: 0 };
    let forwarded = 0;

    async function run(mode: 'off' | 'on', n: number, record: boolean): Promise<void> {
      const svc = services[mode]!;
      const t0 = nowMs();
      await pool(
        Array.from({ length: n }, (_, i) => i),
        concurrency,
        async () => {
          const i = counter++;
          const wabaId = `1${String(1_000_000_000 + (i % 500))}`;
          const body =
            i % 50 === 0
              ? accountUpdatePayload(wabaId, i % 100 === 0 ? 'ACCOUNT_OFFBOARDED' : 'ACCOUNT_RECONNECTED')
              : statusPayload(wabaId, phone, [
                  { id: `wamid.relay${i.toString(36)}`, status: 'delivered', recipientId: '15550001111' },
                ]);
          const t = nowMs();
          const r = await sendWebhook({ targetUrl: svc.webhookUrl, appSecret: svc.appSecret, body });
          if (record) latencies[mode].push(nowMs() - t);
          if (r.status !== 200) failures[mode]++;
          else if (mode === 'on') forwarded++;
        },
      );
      if (record) elapsed[mode] += nowMs() - t0;
    }

    for (const mode of ['off', 'on'] as const) await run(mode, warmup, false);
    const perBlock = Math.ceil(requests / blocks);
    for (let b = 0; b < blocks; b++) {
      const order = b % 2 === 0 ? (['off', 'on'] as const) : (['on', 'off'] as const);
      for (const mode of order) await run(mode, Math.min(perBlock, requests - b * perBlock), true);
    }
    const drainStart = nowMs();
    while (receiver.received() < forwarded && nowMs() - drainStart < 180_000)
      await new Promise((r) => setTimeout(r, 200));
    const drainSeconds = (nowMs() - drainStart) / 1000;

    const stat = (m: 'off' | 'on') => ({
      rps: (latencies[m].length / elapsed[m]) * 1000,
      p50: percentile(latencies[m], 50),
      p99: percentile(latencies[m], 99),
      mean: mean(latencies[m]),
    });
    const off = stat('off');
    const on = stat('on');
    process.stdout.write(
      `\nRelay benchmark: ${requests} measured requests per service, ${concurrency} in flight, 98% statuses / 2% account_update\n\n`,
    );
    process.stdout.write(
      table(
        ['service', 'req/s', 'p50 ms', 'p99 ms', 'mean ms', 'non-200'],
        [
          ['forwarding off', fmt(off.rps, 0), fmt(off.p50, 1), fmt(off.p99, 1), fmt(off.mean, 1), String(failures.off)],
          ['forwarding on', fmt(on.rps, 0), fmt(on.p50, 1), fmt(on.p99, 1), fmt(on.mean, 1), String(failures.on)],
          [
            'on ÷ off',
            `${fmt(on.rps / off.rps, 2)}×`,
            `${fmt(on.p50 / off.p50, 2)}×`,
            `${fmt(on.p99 / off.p99, 2)}×`,
            '',
            '',
          ],
        ],
      ),
    );
    process.stdout.write(
      `\nforwarded deliveries received: ${receiver.received()} of ${forwarded} acked (all within ${fmt(drainSeconds, 1)} s after the load ended)\n` +
        `goals: throughput on ÷ off ≥ 0.8 → ${on.rps / off.rps >= 0.8 ? 'met' : 'MISSED'}; p99 ≤ 250 ms with forwarding → ${on.p99 <= 250 ? 'met' : 'MISSED'}\n`,
    );
    writeResults('relay', {
      requests,
      concurrency,
      off,
      on,
      ratio: on.rps / off.rps,
      received: receiver.received(),
      forwarded,
      drainSeconds,
    });
  } finally {
    say('stopping');
    await services.on?.stop();
    await services.off?.stop();
    await servers.stop();
    await receiver.stop();
  }
}

runMain(main);
