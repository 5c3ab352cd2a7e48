import { parseArgs } from 'node:util';
import { accountUpdatePayload, inboundPayload, SAMPLE_IDS, type AccountUpdateOptions } from './payloads';
import { LIFECYCLE_MODES, sendWebhook, startMetaSimulator, type LifecycleEvent } from './server';

/**
 * `npm run meta-sim -- <command>`: run the Cloud API simulator, or play Meta's `account_update`
 * webhooks against a running service. Exit codes: 0 done (webhooks answered 200), 1 the service
 * answered something else or could not be reached, 2 bad arguments.
 */

const USAGE = `Usage: meta-sim <command> [options]

Commands:
  serve                       Run the Cloud API simulator until Ctrl-C; prints its URL.
      --port <n>                port on 127.0.0.1 (default 4010; 0 = any free port)
      --cap <msg/s>             throughput cap per phone number (default 20, as for coexistence; 0 = none)
      --token <token>           bearer token sends must carry (default: any token is accepted)
      --latency <ms>            fixed delay added to every answer (default 0)
      --webhook-target <url>    where POST /_sim/numbers/<id>/lifecycle delivers its webhooks
                                (signed with --secret or META_APP_SECRET)
      --app-calling-error <codes>
                                every number's APP health entity BLOCKED with these calling (SIP)
                                errors, e.g. 138024: health_status BLOCKED overall while the
                                PHONE_NUMBER entity is AVAILABLE and sends are accepted
  offboard <wabaId>           Send a signed ACCOUNT_OFFBOARDED account_update webhook.
  reconnect <wabaId>          Send a signed ACCOUNT_RECONNECTED account_update webhook.
  partner-removed <wabaId>    Send a signed PARTNER_REMOVED webhook (waba_info.waba_id = <wabaId>).
      --reason <reason>         add disconnection_info (e.g. ACCOUNT_DISCONNECTED, PRIMARY_INACTIVITY)
  scenario <wabaId>           offboard, wait --gap, reconnect.
      --gap <duration>          500ms, 5s, 2m (default 5s)
  inbound <phone> <from>      A customer's text message to a business number: a signed messages webhook
                              (what opens the customer service window).
      --ago <duration>          its timestamp this long ago, e.g. 25h (default 0: now)
      --sim <url>               have that simulator send it (to its --webhook-target): the simulator
                                then answers 131047 to free-form sends to <from> once it is 24 h old
      --waba <wabaId>           without --sim: entry[].id of the webhook (default Meta's sample WABA)

Webhook options:
  --target <url>              default http://127.0.0.1:3000/webhooks/meta
  --secret <secret>           app secret to sign with (default: env META_APP_SECRET, first of a comma list)
  --sim <url> --phone <id>    also switch that phone number of a running simulator to the event's
                              mode (offboarded / normal / partner_removed) before the webhook
  --drop <events>             play lost webhooks: do not send these (comma list of offboard,
                              reconnect, partner-removed); with --sim the number still switches.
                              e.g. scenario --drop reconnect: the number becomes usable again at
                              the probe and for sends, but ACCOUNT_RECONNECTED never arrives
  --app-calling-error <codes> with --sim --phone: also give that number's app health entity these
                              calling (SIP) errors (comma list, e.g. 138024,138025; none = clear)

Examples:
  npm run meta-sim -- serve --port 4010 --cap 20 --token dev-token
  META_APP_SECRET=s3cret npm run meta-sim -- scenario 102290129340398 --gap 10s
  META_APP_SECRET=s3cret npm run meta-sim -- scenario 102290129340398 --gap 10s \\
    --sim http://127.0.0.1:4010 --phone 106540352242922 --drop reconnect
  # the same with health_status BLOCKED only by an app calling error (the number itself can send):
  META_APP_SECRET=s3cret npm run meta-sim -- scenario 102290129340398 --gap 10s \\
    --sim http://127.0.0.1:4010 --phone 106540352242922 --drop reconnect --app-calling-error 138024
  # a customer who last wrote 25 h ago: free-form sends to them are held back (or go as a template)
  npm run meta-sim -- inbound 106540352242922 15551234567 --ago 25h --sim http://127.0.0.1:4010`;

const DEFAULT_TARGET = 'http://127.0.0.1:3000/webhooks/meta';

/** Thrown for bad command lines; printed with the usage text, exit code 2. */
class UsageError extends Error {}

const OPTIONS = {
  port: { type: 'string' },
  cap: { type: 'string' },
  token: { type: 'string' },
  latency: { type: 'string' },
  target: { type: 'string' },
  secret: { type: 'string' },
  gap: { type: 'string' },
  reason: { type: 'string' },
  sim: { type: 'string' },
  phone: { type: 'string' },
  drop: { type: 'string' },
  ago: { type: 'string' },
  waba: { type: 'string' },
  'webhook-target': { type: 'string' },
  'app-calling-error': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>['values'];

/** Runs one command line (without `node script`); resolves to the process exit code. */
export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  try {
    const { values, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
    const [command, ...rest] = positionals;
    if (values.help || command === 'help') {
      console.log(USAGE);
      return 0;
    }
    if (command === 'serve') return await serve(values, rest);
    if (command === 'inbound') return await playInbound(rest, values, env);
    const wabaId = rest[0];
    if (!command) throw new UsageError('missing command');
    if (!['offboard', 'reconnect', 'partner-removed', 'scenario'].includes(command)) {
      throw new UsageError(`unknown command "${command}"`);
    }
    if (!wabaId || rest.length > 1) throw new UsageError(`${command} takes exactly one <wabaId>`);
    return await playWebhooks(command, wabaId, values, env);
  } catch (err) {
    if (!(err instanceof UsageError) && !isParseArgsError(err)) throw err;
    console.error(`meta-sim: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
}

function isParseArgsError(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS');
}

async function serve(values: Values, rest: string[]): Promise<number> {
  if (rest.length > 0) throw new UsageError('serve takes no positional arguments');
  const webhookTarget = values['webhook-target'];
  let webhook: { targetUrl: string; appSecret: string } | undefined;
  if (webhookTarget !== undefined) {
    if (!URL.canParse(webhookTarget)) throw new UsageError(`--webhook-target "${webhookTarget}" is not a URL`);
    const appSecret = values.secret ?? process.env.META_APP_SECRET?.split(',')[0]?.trim();
    if (!appSecret) throw new UsageError('--webhook-target needs --secret or META_APP_SECRET');
    webhook = { targetUrl: webhookTarget, appSecret };
  }
  const appCallingErrors = parseCodes(values['app-calling-error']);
  const sim = await startMetaSimulator({
    port: intOption('port', values.port, 4010),
    token: values.token,
    webhook,
    defaults: {
      throughputPerSec: intOption('cap', values.cap, 20),
      latencyMs: intOption('latency', values.latency, 0),
      ...(appCallingErrors ? { appCallingErrors } : {}),
    },
  });
  console.log(`meta-sim listening on ${sim.url}`);
  console.log(`  send:    POST ${sim.url}/v25.0/<phoneNumberId>/messages`);
  console.log(`  log:     GET  ${sim.url}/_sim/log?phoneNumberId=<id>`);
  console.log(`  control: POST ${sim.url}/_sim/numbers/<id>  e.g. {"mode":"offboarded"}`);
  console.log(
    `  events:  POST ${sim.url}/_sim/numbers/<id>/lifecycle  e.g. {"event":"ACCOUNT_RECONNECTED","dropWebhook":true}`,
  );
  console.log(
    `  inbound: POST ${sim.url}/_sim/numbers/<id>/inbound  e.g. {"from":"15551234567","agoMs":90000000} (25 h ago)`,
  );
  console.log('Ctrl-C to stop.');
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await sim.stop();
  return 0;
}

/** `--drop` names → the events not to send. */
const DROP_NAMES: Record<string, LifecycleEvent> = {
  offboard: 'ACCOUNT_OFFBOARDED',
  reconnect: 'ACCOUNT_RECONNECTED',
  'partner-removed': 'PARTNER_REMOVED',
  ACCOUNT_OFFBOARDED: 'ACCOUNT_OFFBOARDED',
  ACCOUNT_RECONNECTED: 'ACCOUNT_RECONNECTED',
  PARTNER_REMOVED: 'PARTNER_REMOVED',
};

function parseDrop(text: string | undefined): Set<LifecycleEvent> {
  const dropped = new Set<LifecycleEvent>();
  for (const name of (text ?? '').split(',').map((n) => n.trim())) {
    if (name === '') continue;
    const event = DROP_NAMES[name];
    if (!event) throw new UsageError(`--drop: unknown event "${name}" (offboard, reconnect, partner-removed)`);
    dropped.add(event);
  }
  return dropped;
}

/** Sends the command's webhook(s); exit 0 only when every one was answered 200 (or dropped on purpose). */
async function playWebhooks(command: string, wabaId: string, values: Values, env: NodeJS.ProcessEnv): Promise<number> {
  const dropped = parseDrop(values.drop);
  const steer = simSteering(values);
  const secret = values.secret ?? env.META_APP_SECRET?.split(',')[0]?.trim();
  if (!secret) throw new UsageError('no app secret: pass --secret or set META_APP_SECRET');
  const target = values.target ?? DEFAULT_TARGET;
  if (!URL.canParse(target)) throw new UsageError(`--target "${target}" is not a URL`);
  const send = async (event: LifecycleEvent, extra: AccountUpdateOptions = {}): Promise<boolean> => {
    if (steer && !(await steer(LIFECYCLE_MODES[event]))) return false;
    if (dropped.has(event)) {
      console.log(`${event} → ${target}: dropped (not sent, as if Meta's webhook was lost)`);
      return true;
    }
    return post(target, secret, event, accountUpdatePayload(wabaId, event, extra));
  };

  if (command === 'offboard') return (await send('ACCOUNT_OFFBOARDED')) ? 0 : 1;
  if (command === 'reconnect') return (await send('ACCOUNT_RECONNECTED')) ? 0 : 1;
  if (command === 'partner-removed') {
    const disconnectionInfo = values.reason ? { reason: values.reason, initiated_by: 'USER' } : undefined;
    return (await send('PARTNER_REMOVED', { disconnectionInfo })) ? 0 : 1;
  }
  const gapMs = parseGap(values.gap ?? '5s');
  const offboardTime = nowSeconds();
  if (!(await send('ACCOUNT_OFFBOARDED', { time: offboardTime }))) return 1;
  console.log(`waiting ${gapMs} ms…`);
  await new Promise((resolve) => setTimeout(resolve, gapMs));
  // Strictly later `entry.time` than the offboard, even for sub-second gaps, so the service can order them.
  return (await send('ACCOUNT_RECONNECTED', { time: Math.max(nowSeconds(), offboardTime + 1) })) ? 0 : 1;
}

/**
 * `inbound <phone> <from>`: through the simulator with `--sim` (it sends the webhook and learns the
 * window), else straight to `--target`. Exit 0 only when the service answered 200.
 */
async function playInbound(rest: string[], values: Values, env: NodeJS.ProcessEnv): Promise<number> {
  const [phone, from] = rest;
  if (!phone || !from || rest.length > 2) throw new UsageError('inbound takes <phone> <from>');
  if (!/^\d{5,20}$/.test(from)) throw new UsageError(`<from> must be a WhatsApp id (digits), got "${from}"`);
  const agoMs = values.ago === undefined ? 0 : parseGap(values.ago);
  const what = `inbound from ${from} to ${phone}${agoMs ? ` (${values.ago} ago)` : ''}`;
  if (values.sim !== undefined) {
    if (!URL.canParse(values.sim)) throw new UsageError(`--sim "${values.sim}" is not a URL`);
    const url = `${values.sim.replace(/\/$/, '')}/_sim/numbers/${encodeURIComponent(phone)}/inbound`;
    try {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ from, agoMs }),
        signal: AbortSignal.timeout(15_000),
      });
      const answer = (await res.json()) as { status?: number; error?: string | { message?: string } };
      const error = typeof answer.error === 'string' ? answer.error : answer.error?.message;
      console.log(`${what} via the simulator: HTTP ${res.status}; the service answered ${answer.status ?? error}`);
      return res.ok && answer.status === 200 ? 0 : 1;
    } catch (err) {
      console.error(`${what}: the simulator did not answer (${String((err as Error).cause ?? err)})`);
      return 1;
    }
  }
  const secret = values.secret ?? env.META_APP_SECRET?.split(',')[0]?.trim();
  if (!secret) throw new UsageError('no app secret: pass --secret or set META_APP_SECRET');
  const target = values.target ?? DEFAULT_TARGET;
  if (!URL.canParse(target)) throw new UsageError(`--target "${target}" is not a URL`);
  const timestamp = Math.floor((Date.now() - agoMs) / 1000);
  const body = inboundPayload(values.waba ?? SAMPLE_IDS.wabaId, phone, { from, timestamp });
  return (await post(target, secret, what, body)) ? 0 : 1;
}

/**
 * With `--sim` and `--phone`: a function that switches that number's mode (and sets its
 * `--app-calling-error` codes); true when the simulator took it.
 */
function simSteering(values: Values): ((mode: string) => Promise<boolean>) | undefined {
  const appCallingErrors = parseCodes(values['app-calling-error']);
  if (values.sim === undefined && values.phone === undefined) {
    if (appCallingErrors) throw new UsageError('--app-calling-error needs --sim and --phone (or serve)');
    return undefined;
  }
  const simUrl = values.sim;
  const phone = values.phone;
  if (!simUrl || !phone) throw new UsageError('--sim and --phone go together');
  if (!URL.canParse(simUrl)) throw new UsageError(`--sim "${simUrl}" is not a URL`);
  return async (mode) => {
    const url = `${simUrl.replace(/\/$/, '')}/_sim/numbers/${encodeURIComponent(phone)}`;
    try {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ mode, ...(appCallingErrors ? { appCallingErrors } : {}) }),
        signal: AbortSignal.timeout(10_000),
      });
      console.log(`simulator: ${phone} → ${mode}: HTTP ${res.status}`);
      return res.ok;
    } catch (err) {
      console.error(`simulator: ${phone} → ${mode}: no answer (${String((err as Error).cause ?? err)})`);
      return false;
    }
  };
}

/** Posts one signed webhook and prints what the service answered; true on HTTP 200. */
async function post(target: string, secret: string, event: string, body: unknown): Promise<boolean> {
  try {
    const result = await sendWebhook({ targetUrl: target, appSecret: secret, body });
    const answer = result.responseBody ? ` ${result.responseBody.slice(0, 200)}` : '';
    console.log(`${event} → ${target}: HTTP ${result.status}${answer}`);
    return result.status === 200;
  } catch (err) {
    const cause = (err as { cause?: Error & { code?: string } }).cause;
    console.error(`${event} → ${target}: no answer (${cause?.code ?? cause?.message ?? String(err)})`);
    return false;
  }
}

const nowSeconds = (): number => Math.floor(Date.now() / 1000);

function intOption(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`--${name} must be a non-negative integer, got "${text}"`);
  return n;
}

/** `--app-calling-error`: `138024,138025` → the codes; `none` → none (clears); absent → undefined. */
function parseCodes(text: string | undefined): number[] | undefined {
  if (text === undefined) return undefined;
  if (text.trim() === 'none') return [];
  const codes = text.split(',').map((c) => Number(c.trim()));
  if (codes.some((c) => !Number.isInteger(c) || c <= 0)) {
    throw new UsageError(`--app-calling-error must be a comma list of error codes or none, got "${text}"`);
  }
  return codes;
}

const GAP_UNITS_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

/** `500ms`, `5s`, `2m`, `25h`, or a bare number of seconds. */
function parseGap(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) throw new UsageError(`a duration must look like 500ms, 5s, 2m or 25h, got "${text}"`);
  return Math.round(Number(m[1]) * (GAP_UNITS_MS[m[2] ?? 's'] ?? 1_000));
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
