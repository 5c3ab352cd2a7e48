import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { main as cli } from '../../tools/meta-sim/cli';
import { accountUpdatePayload, statusPayload, type WebhookEnvelope } from '../../tools/meta-sim/payloads';
import { sendWebhook, startMetaSimulator, type MetaSimulator } from '../../tools/meta-sim/server';
import { SIGNATURE_HEADER, verifySignature } from '../../src/adapters/meta/signature';

const TOKEN = 'sim-token';
const PHONE = '106540352242922';
const WABA = '102290129340398';

let sim: MetaSimulator;

beforeAll(async () => {
  sim = await startMetaSimulator({ token: TOKEN });
});
afterAll(async () => {
  await sim.stop();
});
beforeEach(() => {
  sim.clearLog();
  sim.resetNumber(PHONE);
});

/** The parts of Meta's answers (success or error) these tests read. */
interface MetaAnswer {
  messages?: Array<{ id: string }>;
  error?: { code: number; error_subcode?: number; type?: string; message?: string };
}

/** The parts of the simulator's control answers these tests read. */
interface ControlAnswer {
  config?: { mode?: string; offboardedError?: unknown };
  accepted?: Array<{ to: string }>;
  rejected?: unknown[];
}

/** A raw Cloud API send, so the tests see the exact HTTP answer. */
async function post(body: unknown, { phone = PHONE, token = TOKEN }: { phone?: string; token?: string } = {}) {
  const res = await fetch(`${sim.url}/v25.0/${phone}/messages`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as MetaAnswer };
}

const text = (to: string, body = 'hi') => ({
  messaging_product: 'whatsapp',
  recipient_type: 'individual',
  to,
  type: 'text',
  text: { body },
});

async function control(method: string, path: string, body?: unknown) {
  const res = await fetch(`${sim.url}/_sim/${path}`, {
    method,
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: res.status === 204 ? undefined : ((await res.json()) as ControlAnswer) };
}

describe('Meta simulator: Cloud API answers', () => {
  it('answers a valid send with a fresh wamid in Meta success shape', async () => {
    const a = await post(text('+16505551234'));
    const b = await post(text('+16505551234'));
    expect(a.status).toBe(200);
    expect(a.json).toEqual({
      messaging_product: 'whatsapp',
      contacts: [{ input: '+16505551234', wa_id: '16505551234' }],
      messages: [{ id: expect.stringMatching(/^wamid\./) }],
    });
    expect(b.json.messages?.[0]?.id).not.toBe(a.json.messages?.[0]?.id);
  });

  it('refuses a body without `to` with 400, code 100, in Meta error shape', async () => {
    const { to: _to, ...withoutTo } = text('+1');
    const res = await post(withoutTo);
    expect(res.status).toBe(400);
    expect(res.json).toEqual({
      error: {
        message: '(#100) The parameter to is required.',
        type: 'OAuthException',
        code: 100,
        error_data: { messaging_product: 'whatsapp', details: 'The parameter to is required.' },
        fbtrace_id: expect.any(String),
      },
    });
  });

  it('refuses a missing type, missing content and non-JSON with code 100', async () => {
    const { type: _type, ...withoutType } = text('+1');
    const { text: _text, ...withoutContent } = text('+1');
    for (const body of [withoutType, withoutContent, 'not json']) {
      const res = await post(body);
      expect(res.status).toBe(400);
      expect(res.json.error?.code).toBe(100);
    }
  });

  it('refuses a wrong token with 401 and OAuth error 190', async () => {
    const res = await post(text('+1'), { token: 'nope' });
    expect(res.status).toBe(401);
    expect(res.json.error).toMatchObject({ code: 190, type: 'OAuthException' });
  });

  it('answers the phone number probe', async () => {
    const res = await fetch(`${sim.url}/v25.0/${PHONE}?fields=is_on_biz_app,platform_type`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expect(await res.json()).toEqual({ is_on_biz_app: true, platform_type: 'CLOUD_API', id: PHONE });
  });
});

describe('Meta simulator: log', () => {
  it('records accepted and rejected sends in arrival order with rising seq and time', async () => {
    sim.setNumber(PHONE, { pairBurst: 2, pairRefillMs: 60_000 });
    for (const to of ['+10001', '+10002', '+10001', '+10001', '+10003']) await post(text(to, `to ${to}`));
    const { accepted, rejected } = sim.log;
    expect(accepted.map((m) => m.to)).toEqual(['+10001', '+10002', '+10001', '+10003']);
    expect(rejected).toEqual([expect.objectContaining({ to: '+10001', code: 131056, httpStatus: 400 })]);
    // seq keeps counting across clearLog(); accepted and rejected share it, so gaps show the refusal.
    const first = accepted[0]!.seq;
    expect(accepted.map((m) => m.seq - first)).toEqual([0, 1, 2, 4]);
    expect(rejected[0]!.seq - first).toBe(3);
    for (let i = 1; i < accepted.length; i++) {
      expect(accepted[i]!.at).toBeGreaterThan(accepted[i - 1]!.at);
    }
    expect(accepted[0]).toMatchObject({ phoneNumberId: PHONE, type: 'text', body: text('+10001', 'to +10001') });
  });

  it('serves the log over HTTP filtered by phone number, and clears it with DELETE', async () => {
    await post(text('+1'), { phone: PHONE });
    await post(text('+2'), { phone: '999' });
    const filtered = await control('GET', `log?phoneNumberId=${PHONE}`);
    expect(filtered.json?.accepted?.map((m) => m.to)).toEqual(['+1']);
    expect(filtered.json?.rejected).toEqual([]);
    expect((await control('DELETE', 'log')).status).toBe(204);
    expect((await control('GET', 'log')).json).toEqual({ accepted: [], rejected: [] });
  });
});

describe('Meta simulator: control endpoint', () => {
  it('POST /_sim/numbers/:id switches a number to offboarded with the configured error', async () => {
    const res = await control('POST', `numbers/${PHONE}`, { mode: 'offboarded', offboardedError: { code: 131045 } });
    expect(res.status).toBe(200);
    expect(res.json?.config).toMatchObject({ mode: 'offboarded', offboardedError: { code: 131045 } });
    const send = await post(text('+1'));
    expect(send.status).toBe(400);
    expect(send.json.error?.code).toBe(131045);
    expect(sim.log.rejected).toEqual([expect.objectContaining({ code: 131045 })]);
  });

  it('an error script answers the next sends in order, then sends succeed again', async () => {
    await control('POST', `numbers/${PHONE}`, { errorScript: [{ code: 131026 }, { code: 131047, subcode: 7 }] });
    const codes = [];
    for (let i = 0; i < 3; i++) {
      const res = await post(text('+1'));
      codes.push(res.status === 200 ? 'ok' : `${res.json.error?.code}/${res.json.error?.error_subcode ?? '-'}`);
    }
    expect(codes).toEqual(['131026/-', '131047/7', 'ok']);
  });

  it('a throughput cap set over HTTP answers 130429 beyond the cap', async () => {
    // One per second: the burst of 4 takes milliseconds, far less than the 1 s refill.
    await control('POST', `numbers/${PHONE}`, { throughputPerSec: 1, pairBurst: 0 });
    const statuses = await Promise.all([1, 2, 3, 4].map((i) => post(text(`+${i}`))));
    const codes = statuses.map((r) => (r.status === 200 ? 200 : r.json.error?.code)).sort();
    expect(codes).toEqual([130429, 130429, 130429, 200]);
  });

  it('refuses an invalid config with 400 and leaves the number unchanged', async () => {
    const res = await control('POST', `numbers/${PHONE}`, { mode: 'sleeping' });
    expect(res.status).toBe(400);
    expect((await control('GET', `numbers/${PHONE}`)).json?.config?.mode).toBe('normal');
  });

  it('DELETE /_sim/numbers/:id resets the number to the defaults', async () => {
    await control('POST', `numbers/${PHONE}`, { mode: 'partner_removed' });
    expect((await control('DELETE', `numbers/${PHONE}`)).json?.config?.mode).toBe('normal');
    expect((await post(text('+1'))).status).toBe(200);
  });
});

/** A tiny webhook receiver that records raw bodies and signature headers and answers `status`. */
async function startReceiver(status = 200) {
  const received: Array<{ raw: Buffer; signature: string | undefined }> = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ raw: Buffer.concat(chunks), signature: req.headers[SIGNATURE_HEADER] as string | undefined });
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/webhooks/meta`;
  const stop = () => new Promise<void>((resolve) => server.close(() => resolve()));
  return { url, received, stop };
}

const parse = (raw: Buffer) => JSON.parse(raw.toString('utf8')) as WebhookEnvelope;

describe('Meta simulator: webhooks', () => {
  it('sendWebhook signs the exact bytes so verifySignature accepts them', async () => {
    const receiver = await startReceiver(200);
    try {
      const body = accountUpdatePayload(WABA, 'ACCOUNT_OFFBOARDED', { time: 1743451903 });
      const result = await sendWebhook({ targetUrl: receiver.url, appSecret: 'app-secret', body });
      expect(result.status).toBe(200);
      const [got] = receiver.received;
      expect(got && verifySignature(got.raw, got.signature, ['app-secret'])).toBe(true);
      expect(got && verifySignature(got.raw, got.signature, ['other-secret'])).toBe(false);
      expect(parse(got!.raw)).toEqual(body);
    } finally {
      await receiver.stop();
    }
  });

  it('reports the status the service answered', async () => {
    const receiver = await startReceiver(401);
    try {
      const result = await sendWebhook({ targetUrl: receiver.url, appSecret: 's', body: { object: 'x' } });
      expect(result.status).toBe(401);
    } finally {
      await receiver.stop();
    }
  });
});

describe('payload builders', () => {
  it('offboard / reconnect look like Meta samples: entry.id is the WABA, value has only the event', () => {
    expect(accountUpdatePayload(WABA, 'ACCOUNT_RECONNECTED', { time: 1743451903 })).toEqual({
      object: 'whatsapp_business_account',
      entry: [
        {
          id: WABA,
          time: 1743451903,
          changes: [{ field: 'account_update', value: { event: 'ACCOUNT_RECONNECTED' } }],
        },
      ],
    });
  });

  it('PARTNER_REMOVED carries the WABA in value.waba_info.waba_id, and disconnection_info when given', () => {
    const payload = accountUpdatePayload('980198427658004', 'PARTNER_REMOVED', {
      time: 1748477359,
      disconnectionInfo: { reason: 'PRIMARY_INACTIVITY', initiated_by: 'SYSTEM' },
    });
    expect(payload.entry[0]?.id).toBe('2949482758682047');
    expect(payload.entry[0]?.changes[0]?.value).toEqual({
      event: 'PARTNER_REMOVED',
      waba_info: { waba_id: '980198427658004', owner_business_id: '2329417887457253' },
      disconnection_info: { reason: 'PRIMARY_INACTIVITY', initiated_by: 'SYSTEM' },
    });
  });

  it('statusPayload builds a messages webhook with statuses[] (failed with errors[])', () => {
    const payload = statusPayload(WABA, PHONE, [
      {
        id: 'wamid.A',
        status: 'failed',
        recipientId: '16505551234',
        timestamp: 1751142888,
        errors: [{ code: 131049 }],
      },
    ]);
    const change = payload.entry[0]?.changes[0];
    expect(payload.entry[0]?.id).toBe(WABA);
    expect(change?.field).toBe('messages');
    expect(change?.value).toMatchObject({
      messaging_product: 'whatsapp',
      metadata: { phone_number_id: PHONE },
      statuses: [
        {
          id: 'wamid.A',
          status: 'failed',
          timestamp: '1751142888',
          recipient_id: '16505551234',
          errors: [{ code: 131049, title: expect.any(String), error_data: { details: expect.any(String) } }],
        },
      ],
    });
  });
});

describe('meta-sim CLI', () => {
  let logSpy: jest.SpyInstance;
  let errorSpy: jest.SpyInstance;
  beforeEach(() => {
    logSpy = jest.spyOn(console, 'log').mockImplementation(() => undefined);
    errorSpy = jest.spyOn(console, 'error').mockImplementation(() => undefined);
  });
  afterEach(() => {
    logSpy.mockRestore();
    errorSpy.mockRestore();
  });

  it('partner-removed sends a signed webhook and exits 0 on HTTP 200', async () => {
    const receiver = await startReceiver(200);
    try {
      const code = await cli([
        'partner-removed',
        '980198427658004',
        '--target',
        receiver.url,
        '--secret',
        'cli-secret',
      ]);
      expect(code).toBe(0);
      const [got] = receiver.received;
      expect(verifySignature(got!.raw, got!.signature, ['cli-secret'])).toBe(true);
      expect(parse(got!.raw).entry[0]?.changes[0]?.value).toMatchObject({
        event: 'PARTNER_REMOVED',
        waba_info: { waba_id: '980198427658004' },
      });
      expect(logSpy).toHaveBeenCalledWith(expect.stringContaining('HTTP 200'));
    } finally {
      await receiver.stop();
    }
  });

  it('scenario plays offboard then reconnect with a later entry.time; exits 1 when the service refuses', async () => {
    const receiver = await startReceiver(200);
    try {
      const env = { META_APP_SECRET: 'env-secret,older-secret' };
      expect(await cli(['scenario', WABA, '--gap', '10ms', '--target', receiver.url], env)).toBe(0);
      const [off, on] = receiver.received.map((r) => parse(r.raw).entry[0]);
      expect(off?.changes[0]?.value.event).toBe('ACCOUNT_OFFBOARDED');
      expect(on?.changes[0]?.value.event).toBe('ACCOUNT_RECONNECTED');
      expect(on!.time!).toBeGreaterThan(off!.time!);
      expect(verifySignature(receiver.received[0]!.raw, receiver.received[0]!.signature, ['env-secret'])).toBe(true);
    } finally {
      await receiver.stop();
    }
    const refusing = await startReceiver(403);
    try {
      expect(await cli(['offboard', WABA, '--target', refusing.url, '--secret', 's'])).toBe(1);
    } finally {
      await refusing.stop();
    }
  });

  it.each([
    [[]],
    [['launch']],
    [['offboard']],
    [['offboard', WABA, '--bogus']],
    [['scenario', WABA, '--gap', 'soon', '--secret', 's']],
    [['reconnect', WABA]],
    [['serve', '--port', 'abc']],
  ])('exits 2 with usage on bad arguments: %j', async (argv) => {
    expect(await cli(argv, {})).toBe(2);
    expect(errorSpy).toHaveBeenCalledWith(expect.stringContaining('Usage: meta-sim'));
  });
});
