/**
 * `npm run bench`: runs the benchmarks one after the other, each in its own process with its own
 * servers (drain, send, webhook), then prints a Markdown summary of the JSON results they wrote.
 *
 *   npm run bench                         all three with their defaults (≈ 15 min on 2 cores)
 *   npm run bench -- --only send,webhook  a subset
 *   npm run bench -- --quick              small sizes (≈ 4 min): a smoke run, not numbers to quote
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { GIT_AT_START, RESULTS_DIR, flags, fmt, pct } from './lib/report';

const args = flags('run', {
  only: { type: 'string', default: 'drain,send,webhook', help: 'comma list of benchmarks to run' },
  quick: { type: 'boolean', default: false, help: 'small sizes for a smoke run' },
});

const QUICK: Record<string, string[]> = {
  drain: ['--messages', '2000', '--messages20', '200', '--ceiling-requests', '5000'],
  send: ['--messages', '100', '--rounds', '1', '--warmup', '20'],
  webhook: ['--requests', '400', '--warmup', '100'],
};

function runOne(name: string): Promise<number> {
  const file = path.join(__dirname, `${name}.ts`);
  const extra = args.quick ? (QUICK[name] ?? []) : [];
  process.stderr.write(`\n[bench] ===== ${name} ${extra.join(' ')} =====\n`);
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [require.resolve('tsx/cli'), file, ...extra], { stdio: 'inherit' });
    const forward = (sig: NodeJS.Signals) => child.kill(sig);
    process.on('SIGINT', forward);
    process.on('SIGTERM', forward);
    child.on('exit', (code, signal) => {
      process.off('SIGINT', forward);
      process.off('SIGTERM', forward);
      resolve(code ?? (signal ? 128 : 1));
    });
  });
}

interface DrainJson {
  settings: { connectTimeoutS?: number };
  ceiling?: { requests: number; concurrency: number; perSec: number; errors: number };
  cases: {
    cap: number;
    coexistence: boolean;
    sent: number;
    messages: number;
    ackToFirstSendMs: number;
    ratePerSec: number;
    ratio: number;
    maxIn1s: number;
    tightestCapPlusOneMs?: number | null;
    rejected: Record<string, number>;
    ackToConnectedMs: number | null;
  }[];
}
interface SendJson {
  summary: { kind: string; medianPerSec: number; rounds: number[]; e2eP50Ms: number; e2eP99Ms: number }[];
  ratios: {
    sendOverBareHttp: number;
    sendOverBareNoop: number;
    pairedSendOverBareHttp?: number;
    pairedSendOverBareNoop?: number;
  };
}
interface WebhookJson {
  app: { p50: number; p99: number };
  bare: { p50: number; p99: number };
  ratios: { p50: number; p99: number };
}

/** The newest result file of `name` written since `since`. */
function latest<T>(name: string, since: number): T | undefined {
  if (!fs.existsSync(RESULTS_DIR)) return undefined;
  const files = fs
    .readdirSync(RESULTS_DIR)
    .filter((f) => f.startsWith(`${name}-`) && f.endsWith('.json'))
    .map((f) => path.join(RESULTS_DIR, f))
    .filter((f) => fs.statSync(f).mtimeMs >= since)
    .sort();
  const last = files[files.length - 1];
  return last ? (JSON.parse(fs.readFileSync(last, 'utf8')) as T) : undefined;
}

function summary(since: number): string {
  const lines: string[] = [];
  const drain = latest<DrainJson>('drain', since);
  if (drain) {
    lines.push(
      '### Drain',
      '',
      '| case | msgs | ack→1st send | rate | of cap | max in 1 s | shortest span of cap+1 sends | rejected | ack→connected |',
      '|---|---|---|---|---|---|---|---|---|',
    );
    for (const c of drain.cases) {
      const rejected =
        Object.entries(c.rejected)
          .map(([k, v]) => `${k}×${v}`)
          .join(' ') || '0';
      lines.push(
        `| ${c.cap} msg/s${c.coexistence ? ' (coexistence)' : ''} | ${c.sent}/${c.messages} | ${fmt(c.ackToFirstSendMs, 0)} ms | ${fmt(c.ratePerSec, 1)} msg/s | ${pct(c.ratio)} | ${c.maxIn1s} | ${c.tightestCapPlusOneMs === undefined || c.tightestCapPlusOneMs === null ? '-' : `${fmt(c.tightestCapPlusOneMs, 1)} ms`} | ${rejected} | ${c.ackToConnectedMs === null ? `not within ${drain.settings.connectTimeoutS ?? '--connect-timeout'} s` : `${fmt(c.ackToConnectedMs / 1000, 1)} s`} |`,
      );
    }
    if (drain.ceiling)
      lines.push(
        `| simulator ceiling (no cap, ${drain.ceiling.concurrency} in flight) | ${drain.ceiling.requests} | - | ${fmt(drain.ceiling.perSec, 0)} sends/s | - | - | - | ${drain.ceiling.errors} | - |`,
      );
    lines.push('');
  }
  const send = latest<SendJson>('send', since);
  if (send) {
    lines.push('### Send', '', '| kind | median wf/s | rounds | e2e p50 | e2e p99 |', '|---|---|---|---|---|');
    for (const s of send.summary)
      lines.push(
        `| ${s.kind} | ${fmt(s.medianPerSec)} | ${s.rounds.join(' / ')} | ${fmt(s.e2eP50Ms, 0)} ms | ${fmt(s.e2eP99Ms, 0)} ms |`,
      );
    lines.push(
      '',
      `send ÷ bare-http = ${pct(send.ratios.sendOverBareHttp)} (per-round median ${pct(send.ratios.pairedSendOverBareHttp ?? NaN)}), send ÷ bare-noop = ${pct(send.ratios.sendOverBareNoop)} (per-round ${pct(send.ratios.pairedSendOverBareNoop ?? NaN)})`,
      '',
    );
  }
  const webhook = latest<WebhookJson>('webhook', since);
  if (webhook) {
    lines.push('### Webhook ack', '', '| target | p50 | p99 |', '|---|---|---|');
    lines.push(`| real app | ${fmt(webhook.app.p50, 2)} ms | ${fmt(webhook.app.p99, 2)} ms |`);
    lines.push(`| bare Koa | ${fmt(webhook.bare.p50, 2)} ms | ${fmt(webhook.bare.p99, 2)} ms |`);
    lines.push(`| ratio | ${fmt(webhook.ratios.p50, 2)}× | ${fmt(webhook.ratios.p99, 2)}× |`, '');
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const since = Date.now();
  const names = args.only
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const unknown = names.filter((n) => !['drain', 'send', 'webhook'].includes(n));
  if (unknown.length > 0) throw new Error(`unknown benchmark(s): ${unknown.join(', ')}`);
  const failed: string[] = [];
  for (const name of names) if ((await runOne(name)) !== 0) failed.push(name);
  const code = GIT_AT_START.commit
    ? `, commit ${GIT_AT_START.commit}${GIT_AT_START.dirtyOutsideBench ? ' + uncommitted changes' : ''}`
    : '';
  process.stdout.write(`\n## Benchmark summary (${new Date().toISOString()}${code})\n\n${summary(since)}\n`);
  if (failed.length > 0) {
    process.stderr.write(`[bench] failed: ${failed.join(', ')}\n`);
    process.exitCode = 1;
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`[bench] ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
