import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import Koa from 'koa';
import pino from 'pino';
import { appErrorListener, errorMiddleware } from '../../src/http/errors';
import { createCounters, createWebhookRouter, type WebhookCounters, type WebhookSink } from '../../src/http/webhook';
import { addWebhookCounters, createRelayMetrics } from '../../src/http/metrics';
import { signBody } from '../../src/adapters/meta/signature';
import type { ParsedWebhook } from '../../src/adapters/meta/webhook-payload';

const PATH = '/webhooks/meta';
const SECRET = 'current-app-secret';
const VERIFY_TOKEN = 'verify-me';
const MAX_BODY = 64 * 1024;
const FIXTURES = path.join(__dirname, '../fixtures/meta');
const fixtureText = (name: string): string => readFileSync(path.join(FIXTURES, name), 'utf8');

/** The seam: records what it is given; can be told to fail or to hold its answer. */
class RecordingSink implements WebhookSink {
  readonly accepted: ParsedWebhook[] = [];
  behaviour: 'ok' | 'throw' | 'hang' = 'ok';
  gate: Promise<void> | undefined;
  async accept(update: ParsedWebhook): Promise<void> {
    if (this.behaviour === 'throw') throw new Error('mongo is down');
    if (this.behaviour === 'hang') return new Promise<void>(() => undefined);
    if (this.gate) await this.gate;
    this.accepted.push(update);
  }
}

interface Harness {
  url: string;
  port: number;
  sink: RecordingSink;
  counters: WebhookCounters;
  logs: Record<string, unknown>[];
  /** The log lines as written. */
  lines: string[];
  close(): Promise<void>;
}

const harnesses: Harness[] = [];
afterEach(async () => {
  await Promise.all(harnesses.splice(0).map((h) => h.close()));
});

async function start(
  opts: { appSecrets?: string[]; sinkTimeoutMs?: number; maxBodyBytes?: number } = {},
): Promise<Harness> {
  const logs: Record<string, unknown>[] = [];
  const lines: string[] = [];
  const logger = pino(
    { level: 'debug' },
    {
      write: (line: string) => {
        lines.push(line);
        logs.push(JSON.parse(line) as Record<string, unknown>);
      },
    },
  );
  const sink = new RecordingSink();
  const counters = createCounters();
  const router = createWebhookRouter({
    path: PATH,
    verifyToken: VERIFY_TOKEN,
    appSecrets: opts.appSecrets ?? [SECRET],
    maxBodyBytes: opts.maxBodyBytes ?? MAX_BODY,
    sink,
    logger,
    counters,
    sinkTimeoutMs: opts.sinkTimeoutMs,
  });
  const app = new Koa();
  app.on('error', appErrorListener(logger));
  app.use(errorMiddleware({ logger }));
  app.use(async (ctx, next) => {
    if (ctx.path === '/boom') throw new Error('secret internals at /srv/app.js:12');
    await next();
  });
  app.use(router.routes()).use(router.allowedMethods());
  const server = http.createServer(app.callback());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const h: Harness = {
    url: `http://127.0.0.1:${port}${PATH}`,
    port,
    sink,
    counters,
    logs,
    lines,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  harnesses.push(h);
  return h;
}

function post(h: Harness, body: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(h.url, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } });
}
const signedPost = (h: Harness, body: string, secret = SECRET) =>
  post(h, body, { 'x-hub-signature-256': signBody(body, secret) });

/** Sends headers, then writes `chunks` without ending the request; resolves with the answer. */
function streamWithoutEnding(
  h: Harness,
  headers: Record<string, string>,
  chunks: Buffer[],
): Promise<{ status: number; body: string; requestEnded: boolean; connection?: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: h.port, path: PATH, method: 'POST', headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => {
        resolve({
          status: res.statusCode ?? 0,
          body,
          requestEnded: req.writableEnded,
          connection: res.headers.connection,
        });
        req.destroy();
      });
    });
    req.on('error', reject);
    req.flushHeaders();
    for (const c of chunks) req.write(c);
  });
}

const offboarded = fixtureText('account_update_account_offboarded.json');

describe('GET verification handshake', () => {
  it('answers 200 with hub.challenge as text/plain when mode is subscribe and the token matches', async () => {
    const h = await start();
    const res = await fetch(`${h.url}?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=${VERIFY_TOKEN}`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(await res.text()).toBe('1158201444');
  });

  it.each([
    ['a wrong token', 'hub.mode=subscribe&hub.challenge=1&hub.verify_token=nope'],
    ['a missing token', 'hub.mode=subscribe&hub.challenge=1'],
    ['a wrong mode', `hub.mode=unsubscribe&hub.challenge=1&hub.verify_token=${VERIFY_TOKEN}`],
    ['a repeated token', `hub.mode=subscribe&hub.challenge=1&hub.verify_token=${VERIFY_TOKEN}&hub.verify_token=x`],
  ])('answers 403 for %s and does not echo the challenge', async (_title, query) => {
    const h = await start();
    const res = await fetch(`${h.url}?${query}`);
    expect(res.status).toBe(403);
    expect(await res.json()).toEqual({ error: { code: 'verification_failed', message: expect.any(String) } });
  });
});

describe('POST delivery', () => {
  it('a signed account_update delivery answers 200 {"ok":true} and the sink gets the event', async () => {
    const h = await start();
    const res = await signedPost(h, offboarded);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('{"ok":true}');
    expect(h.sink.accepted).toHaveLength(1);
    expect(h.sink.accepted[0]?.accountUpdates).toEqual([
      expect.objectContaining({ event: 'ACCOUNT_OFFBOARDED', wabaId: '102290129340398', metaTime: 1743451903 }),
    ]);
    expect(h.counters).toMatchObject({ received: 1, accepted: 1 });
  });

  it('answers only after the sink has resolved', async () => {
    const h = await start();
    let release!: () => void;
    h.sink.gate = new Promise<void>((r) => (release = r));
    let answered = false;
    const pending = signedPost(h, offboarded).then((r) => {
      answered = true;
      return r;
    });
    await new Promise((r) => setTimeout(r, 100));
    expect(answered).toBe(false);
    release();
    expect((await pending).status).toBe(200);
    expect(h.sink.accepted).toHaveLength(1);
  });

  it('an unsigned delivery answers 401 missing_signature and the sink is never called', async () => {
    const h = await start();
    const res = await post(h, offboarded);
    expect(res.status).toBe(401);
    expect(await res.json()).toEqual({ error: { code: 'missing_signature', message: expect.any(String) } });
    expect(h.sink.accepted).toEqual([]);
    expect(h.counters.badSignature).toBe(1);
  });

  it.each([
    ['signed with another secret', (body: string) => signBody(body, 'someone-else')],
    ['signed over different bytes', (body: string) => signBody(body + ' ', SECRET)],
    ['a malformed header', () => 'sha256=not-hex'],
  ])('a delivery %s answers 401 invalid_signature and the sink is never called', async (_title, sign) => {
    const h = await start();
    const res = await post(h, offboarded, { 'x-hub-signature-256': sign(offboarded) });
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('invalid_signature');
    expect(h.sink.accepted).toEqual([]);
  });

  it('during a secret rotation deliveries signed with the old or the new secret are both accepted', async () => {
    const h = await start({ appSecrets: ['new-secret', 'old-secret'] });
    expect((await signedPost(h, offboarded, 'old-secret')).status).toBe(200);
    expect((await signedPost(h, offboarded, 'new-secret')).status).toBe(200);
    expect((await signedPost(h, offboarded, SECRET)).status).toBe(401);
    expect(h.sink.accepted).toHaveLength(2);
  });

  it('a body of exactly the cap is read (the cap is inclusive)', async () => {
    const h = await start();
    const body = JSON.stringify({ object: 'whatsapp_business_account', entry: [], pad: '' });
    const padded = body.replace('"pad":""', `"pad":"${'x'.repeat(MAX_BODY - body.length)}"`);
    expect(Buffer.byteLength(padded)).toBe(MAX_BODY);
    expect((await signedPost(h, padded)).status).toBe(200);
  });

  it('a Content-Length over the cap answers 413 before any of the body is sent', async () => {
    const h = await start();
    const answer = await streamWithoutEnding(
      h,
      {
        'content-type': 'application/json',
        'content-length': String(MAX_BODY * 100),
        'x-hub-signature-256': 'sha256=00',
      },
      [],
    );
    expect(answer.status).toBe(413);
    expect(answer.requestEnded).toBe(false);
    expect(JSON.parse(answer.body)).toEqual({
      error: { code: 'payload_too_large', message: expect.any(String), details: { limitBytes: MAX_BODY } },
    });
    expect(h.sink.accepted).toEqual([]);
    expect(h.counters.tooLarge).toBe(1);
  });

  it('a chunked body passing the cap answers 413 while the client is still sending (not read to the end)', async () => {
    const h = await start();
    const answer = await streamWithoutEnding(
      h,
      { 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
      [Buffer.alloc(MAX_BODY / 2, 0x20), Buffer.alloc(MAX_BODY / 2 + 1, 0x20)],
    );
    expect(answer.status).toBe(413);
    expect(answer.requestEnded).toBe(false);
    expect(answer.connection).toBe('close');
    expect(h.sink.accepted).toEqual([]);
  });

  it('a client that disconnects mid-body reaches neither the sink nor the error log, and the server keeps serving', async () => {
    const h = await start();
    await new Promise<void>((resolve) => {
      const req = http.request({
        host: '127.0.0.1',
        port: h.port,
        path: PATH,
        method: 'POST',
        headers: { 'content-length': String(offboarded.length), 'x-hub-signature-256': signBody(offboarded, SECRET) },
      });
      req.on('error', () => resolve());
      req.write(offboarded.slice(0, 20), () => setTimeout(() => req.destroy(), 20));
      req.on('close', () => resolve());
    });
    await new Promise((r) => setTimeout(r, 50));
    expect(h.sink.accepted).toEqual([]);
    expect(h.logs.filter((l) => l.level === 50)).toEqual([]);
    expect((await signedPost(h, offboarded)).status).toBe(200);
  });

  it('a signed body that is not JSON answers 400 invalid_json', async () => {
    const h = await start();
    const res = await signedPost(h, '{"object":"whatsapp_business_account",');
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('invalid_json');
    expect(h.sink.accepted).toEqual([]);
  });

  it('signed JSON that is not a webhook envelope answers 400 invalid_payload with the reason', async () => {
    const h = await start();
    const res = await signedPost(h, fixtureText('history_declined_value_only.json'));
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('invalid_payload');
    expect(body.error.message).toMatch(/object|entry/);
    expect(h.sink.accepted).toEqual([]);
  });

  it('a delivery for another object answers 200, is counted, and the sink is not called', async () => {
    const h = await start();
    const body = JSON.stringify({
      object: 'page',
      entry: [{ id: '1', time: 1, changes: [{ field: 'feed', value: {} }] }],
    });
    const res = await signedPost(h, body);
    expect(res.status).toBe(200);
    expect(h.sink.accepted).toEqual([]);
    expect(h.counters.nonWabaObjects).toBe(1);
    expect(h.logs.some((l) => l.object === 'page')).toBe(true);
  });

  it('when the sink throws, answers 503 so Meta redelivers, and logs the WABA ids involved', async () => {
    const h = await start();
    h.sink.behaviour = 'throw';
    const res = await signedPost(h, fixtureText('account_update_partner_removed.json'));
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('sink_unavailable');
    expect(h.counters.sinkFailures).toBe(1);
    const failure = h.logs.find((l) => l.msg === 'webhook sink failed; answering 503 so Meta redelivers');
    expect(failure?.firstWabaIds).toEqual(['980198427658004']);
    expect(h.logs.filter((l) => l.level === 50)).toHaveLength(1);
  });

  it('when the sink fails a 3,000-entry batch with skipped changes, every log line stays under 4 KB', async () => {
    const h = await start({ maxBodyBytes: 4 * 1024 * 1024 });
    h.sink.behaviour = 'throw';
    const entry = Array.from({ length: 3_000 }, (_, i) => ({
      id: String(100_000_000_000_000 + i),
      time: 1_751_000_000,
      changes: [
        { field: 'account_update', value: { event: 'ACCOUNT_OFFBOARDED' } },
        { field: 'x'.repeat(500), value: 'not an object' },
      ],
    }));
    const res = await signedPost(h, JSON.stringify({ object: 'whatsapp_business_account', entry }));
    expect(res.status).toBe(503);
    const failure = h.logs.find((l) => l.msg === 'webhook sink failed; answering 503 so Meta redelivers');
    expect(failure).toMatchObject({ wabas: 3_000, events: 3_000, statuses: 0 });
    expect(failure?.firstWabaIds).toHaveLength(5);
    expect(h.logs.find((l) => l.msg === 'webhook changes left out')).toMatchObject({ skipped: 3_000 });
    const longest = Math.max(...h.lines.map((l) => Buffer.byteLength(l)));
    expect(longest).toBeLessThan(4 * 1024);
  });

  it('when the sink does not settle within sinkTimeoutMs, answers 503', async () => {
    const h = await start({ sinkTimeoutMs: 50 });
    h.sink.behaviour = 'hang';
    const res = await signedPost(h, offboarded);
    expect(res.status).toBe(503);
  });

  it('a batched delivery of 3 entries with several changes hands over every account update in order', async () => {
    const h = await start();
    const body = JSON.stringify({
      object: 'whatsapp_business_account',
      entry: [
        {
          id: '111',
          time: 1743451903,
          changes: [
            { field: 'account_update', value: { event: 'ACCOUNT_OFFBOARDED' } },
            { field: 'messages', value: { metadata: { phone_number_id: '9' }, messages: [{ id: 'wamid.in' }] } },
            { field: 'account_update', value: { event: 'ACCOUNT_RECONNECTED' } },
          ],
        },
        {
          id: '2949482758682047',
          time: '1748477359',
          changes: [
            { field: 'account_update', value: { event: 'PARTNER_REMOVED', waba_info: { waba_id: '222' } } },
            { field: 'history', value: { history: [] } },
            { field: 'account_update', value: { event: 'PARTNER_ADDED', waba_info: { waba_id: '333' } } },
          ],
        },
        {
          id: '444',
          time: 1743452000,
          changes: [
            { field: 'smb_message_echoes', value: { message_echoes: [] } },
            { field: 'account_update', value: { event: 'ACCOUNT_OFFBOARDED' } },
            {
              field: 'messages',
              value: {
                metadata: { phone_number_id: '9' },
                statuses: [{ id: 'wamid.1', status: 'delivered', timestamp: '1750030073', recipient_id: '1' }],
              },
            },
          ],
        },
      ],
    });
    const res = await signedPost(h, body);
    expect(res.status).toBe(200);
    expect(h.sink.accepted).toHaveLength(1);
    const [delivery] = h.sink.accepted;
    expect(delivery?.accountUpdates.map((u) => `${u.wabaId}:${u.event}`)).toEqual([
      '111:ACCOUNT_OFFBOARDED',
      '111:ACCOUNT_RECONNECTED',
      '222:PARTNER_REMOVED',
      '333:PARTNER_ADDED',
      '444:ACCOUNT_OFFBOARDED',
    ]);
    expect(delivery?.statuses.map((s) => s.wamid)).toEqual(['wamid.1']);
    expect(delivery?.otherChanges).toEqual({ messages: 1, history: 1, smb_message_echoes: 1 });
  });

  it('fields other than account_update are counted by field and shown in the Prometheus text', async () => {
    const h = await start();
    for (const name of [
      'history_approved_chunk.json',
      'smb_message_echoes_text.json',
      'smb_app_state_sync_contact_add.json',
      'messages_status_failed.json',
      'messages_status_sent.json',
      'account_update_account_offboarded.json',
    ]) {
      expect((await signedPost(h, fixtureText(name))).status).toBe(200);
    }
    expect(Object.fromEntries(h.counters.byField)).toEqual({
      history: 1,
      smb_message_echoes: 1,
      smb_app_state_sync: 1,
      messages: 2,
      account_update: 1,
    });
    expect(Object.fromEntries(h.counters.byStatus)).toEqual({ failed: 1, sent: 1 });
    const metrics = createRelayMetrics();
    addWebhookCounters(metrics, h.counters);
    const text = await metrics.render();
    expect(text).toContain('coexist_relay_webhook_received_total 6\n');
    expect(text).toContain('coexist_relay_webhook_changes_total{field="history"} 1\n');
    expect(text).toContain('coexist_relay_webhook_changes_total{field="messages"} 2\n');
    expect(text).toContain('coexist_relay_webhook_account_updates_total{event="ACCOUNT_OFFBOARDED"} 1\n');
    expect(text).toContain('# TYPE coexist_relay_webhook_sink_failures_total counter\n');
  });

  it('status and inbound-message deliveries are not logged at info level', async () => {
    const h = await start();
    await signedPost(h, fixtureText('messages_status_sent.json'));
    await signedPost(h, fixtureText('history_media_followup.json'));
    expect(h.logs.filter((l) => (l.level as number) >= 30)).toEqual([]);
  });
});

describe('error model seen through the app', () => {
  it('an unexpected error answers 500 internal without details and is logged once with the request id', async () => {
    const h = await start();
    const res = await fetch(`http://127.0.0.1:${h.port}/boom`, { headers: { 'x-request-id': 'req-42' } });
    expect(res.status).toBe(500);
    expect(res.headers.get('x-request-id')).toBe('req-42');
    const text = await res.text();
    expect(JSON.parse(text)).toEqual({ error: { code: 'internal', message: 'internal error' } });
    expect(text).not.toMatch(/secret internals|srv/);
    const errors = h.logs.filter((l) => l.level === 50);
    expect(errors).toHaveLength(1);
    expect(errors[0]?.requestId).toBe('req-42');
  });

  it('an unknown path and an unsupported method answer in the same JSON error shape', async () => {
    const h = await start();
    const missing = await fetch(`http://127.0.0.1:${h.port}/nowhere`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({ error: { code: 'not_found', message: 'not found' } });
    const wrongMethod = await fetch(h.url, { method: 'PUT' });
    expect(wrongMethod.status).toBe(405);
    expect(((await wrongMethod.json()) as { error: { code: string } }).error.code).toBe('method_not_allowed');
  });
});
