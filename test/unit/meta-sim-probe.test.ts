import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { main as cli } from '../../tools/meta-sim/cli';
import type { WebhookEnvelope } from '../../tools/meta-sim/payloads';
import { startMetaSimulator, type MetaSimulator, type WebhookDelivery } from '../../tools/meta-sim/server';
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
  sim.setWebhookTarget(undefined);
});

/** `GET /v25.0/<phone>?fields=<fields>`: the HTTP status and the JSON answer. */
async function probe(fields?: string, token = TOKEN) {
  const query = fields === undefined ? '' : `?fields=${encodeURIComponent(fields)}`;
  const res = await fetch(`${sim.url}/v25.0/${PHONE}${query}`, { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

async function sendStatus(): Promise<number> {
  const res = await fetch(`${sim.url}/v25.0/${PHONE}/messages`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ messaging_product: 'whatsapp', to: '+1', type: 'text', text: { body: 'hi' } }),
  });
  await res.text();
  return res.status;
}

const ALL_FIELDS =
  'status,platform_type,is_on_biz_app,code_verification_status,quality_rating,messaging_limit_tier,throughput,health_status';

const otherEntities = [
  { entity_type: 'WABA', id: WABA, can_send_message: 'AVAILABLE' },
  { entity_type: 'BUSINESS', id: '2329417887457253', can_send_message: 'AVAILABLE' },
  { entity_type: 'APP', id: '634974688087057', can_send_message: 'AVAILABLE', can_receive_call_sip: 'AVAILABLE' },
];
const phoneEntity = {
  entity_type: 'PHONE_NUMBER',
  id: PHONE,
  can_send_message: 'AVAILABLE',
  can_receive_call_sip: 'AVAILABLE',
};

describe('Meta simulator: phone number node (probe)', () => {
  it('a normal number is usable: CONNECTED, CLOUD_API, health AVAILABLE on every entity', async () => {
    expect(await probe(ALL_FIELDS)).toEqual({
      status: 200,
      json: {
        id: PHONE,
        status: 'CONNECTED',
        platform_type: 'CLOUD_API',
        is_on_biz_app: true,
        code_verification_status: 'VERIFIED',
        quality_rating: 'GREEN',
        messaging_limit_tier: 'TIER_1K',
        throughput: { level: 'STANDARD' },
        health_status: {
          can_send_message: 'AVAILABLE',
          entities: [phoneEntity, ...otherEntities],
        },
      },
    });
  });

  it('an offboarded number is not usable: NOT_APPLICABLE, DISCONNECTED, BLOCKED with an error naming the disconnection', async () => {
    sim.setMode(PHONE, 'offboarded');
    const { status, json } = await probe(ALL_FIELDS);
    expect(status).toBe(200);
    expect(json).toEqual({
      id: PHONE,
      status: 'DISCONNECTED',
      platform_type: 'NOT_APPLICABLE',
      is_on_biz_app: true,
      code_verification_status: 'VERIFIED',
      quality_rating: 'GREEN',
      messaging_limit_tier: 'TIER_1K',
      throughput: { level: 'STANDARD' },
      health_status: {
        can_send_message: 'BLOCKED',
        entities: [
          {
            entity_type: 'PHONE_NUMBER',
            id: PHONE,
            can_send_message: 'BLOCKED',
            can_receive_call_sip: 'BLOCKED',
            errors: [
              {
                error_code: 133010,
                error_description: expect.stringMatching(/disconnected/),
                possible_solution: expect.stringContaining('ACCOUNT_RECONNECTED'),
              },
            ],
          },
          ...otherEntities,
        ],
      },
    });
  });

  it('only the asked fields come back, plus id; nested syntax and unknown fields are tolerated', async () => {
    expect((await probe('quality_rating')).json).toEqual({ quality_rating: 'GREEN', id: PHONE });
    expect((await probe('throughput{level},name_status')).json).toEqual({
      throughput: { level: 'STANDARD' },
      id: PHONE,
    });
    expect((await probe('is_on_biz_app,platform_type')).json).toEqual({
      is_on_biz_app: true,
      platform_type: 'CLOUD_API',
      id: PHONE,
    });
  });

  it('without fields= it answers the default set (no status, health_status nor tier)', async () => {
    const { json } = await probe();
    expect(Object.keys(json).sort()).toEqual(
      [
        'code_verification_status',
        'display_phone_number',
        'id',
        'is_on_biz_app',
        'platform_type',
        'quality_rating',
        'throughput',
        'verified_name',
      ].sort(),
    );
  });

  it('limitedInfo makes the number LIMITED with additional_info, and the overall status LIMITED', async () => {
    sim.setNumber(PHONE, { limitedInfo: ['Messaging limit reached for the day.'] });
    expect((await probe('health_status')).json.health_status).toEqual({
      can_send_message: 'LIMITED',
      entities: [
        { ...phoneEntity, can_send_message: 'LIMITED', additional_info: ['Messaging limit reached for the day.'] },
        ...otherEntities,
      ],
    });
  });

  it('appCallingErrors: the APP entity is BLOCKED with those errors, the aggregate BLOCKED, the number AVAILABLE, and sends go', async () => {
    sim.setNumber(PHONE, { appCallingErrors: [138024] });
    const { json } = await probe('health_status,status,platform_type');
    expect(json).toMatchObject({ status: 'CONNECTED', platform_type: 'CLOUD_API' });
    expect(json.health_status).toEqual({
      can_send_message: 'BLOCKED',
      entities: [
        phoneEntity,
        otherEntities[0],
        otherEntities[1],
        {
          entity_type: 'APP',
          id: '634974688087057',
          can_send_message: 'BLOCKED',
          can_receive_call_sip: 'BLOCKED',
          errors: [
            {
              error_code: 138024,
              error_description: expect.stringContaining('SIP'),
              possible_solution: expect.any(String),
            },
          ],
        },
      ],
    });
    expect(await sendStatus()).toBe(200);
  });

  it('appCallingErrors is set and cleared over HTTP (POST /_sim/numbers/:id), and outlives a reconnection', async () => {
    const patch = async (body: unknown) =>
      fetch(`${sim.url}/_sim/numbers/${PHONE}`, { method: 'POST', body: JSON.stringify(body) }).then((r) => r.status);
    expect(await patch({ appCallingErrors: [138025], mode: 'offboarded' })).toBe(200);
    sim.setMode(PHONE, 'normal');
    const health = (await probe('health_status')).json.health_status as { can_send_message: string };
    expect(health.can_send_message).toBe('BLOCKED');
    expect(await patch({ appCallingErrors: [] })).toBe(200);
    expect((await probe('health_status')).json.health_status).toMatchObject({ can_send_message: 'AVAILABLE' });
    expect(await patch({ appCallingErrors: ['138024'] })).toBe(400);
  });

  it('a partner-removed number answers the read with 100/33, as sends do', async () => {
    sim.setMode(PHONE, 'partner_removed');
    const { status, json } = await probe('health_status');
    expect(status).toBe(400);
    expect(json.error).toMatchObject({ code: 100, error_subcode: 33, type: 'OAuthException' });
  });

  it('a number with its own token answers 190 (401) to a probe with another token', async () => {
    sim.setNumber(PHONE, { token: 'number-token' });
    const wrong = await probe('health_status', TOKEN);
    expect(wrong.status).toBe(401);
    expect(wrong.json.error).toMatchObject({ code: 190, type: 'OAuthException' });
    expect((await probe('health_status', 'number-token')).status).toBe(200);
  });

  it('counts probes in the receiver stats', async () => {
    await probe('status');
    await probe('status', 'bad');
    expect(sim.receiverStats(PHONE).probes).toBe(2);
  });
});

/** A webhook receiver that records the raw bodies and signatures it got and answers 200. */
async function startReceiver() {
  const received: Array<{ raw: Buffer; signature: string | undefined }> = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ raw: Buffer.concat(chunks), signature: req.headers[SIGNATURE_HEADER] as string | undefined });
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/webhooks/meta`;
  const events = () =>
    received.map((r) => (JSON.parse(r.raw.toString('utf8')) as WebhookEnvelope).entry[0]?.changes[0]?.value.event);
  return { url, received, events, stop: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

describe('Meta simulator: lifecycle webhooks and lost ones', () => {
  it('"lost reconnect": offboard is delivered; the number then becomes usable with no ACCOUNT_RECONNECTED sent', async () => {
    const receiver = await startReceiver();
    try {
      sim.setWebhookTarget({ targetUrl: receiver.url, appSecret: 'app-secret' });
      const off = await sim.lifecycle(PHONE, 'ACCOUNT_OFFBOARDED');
      expect(off).toMatchObject({ event: 'ACCOUNT_OFFBOARDED', wabaId: WABA, dropped: false, status: 200 });
      expect(await sendStatus()).toBe(400);
      expect((await probe('platform_type')).json.platform_type).toBe('NOT_APPLICABLE');

      const on = await sim.lifecycle(PHONE, 'ACCOUNT_RECONNECTED', { dropWebhook: true });
      expect(on).toMatchObject({ event: 'ACCOUNT_RECONNECTED', dropped: true });
      expect(on.status).toBeUndefined();
      expect(sim.numberConfig(PHONE).mode).toBe('normal');
      expect(await sendStatus()).toBe(200);
      expect((await probe('health_status,platform_type')).json).toMatchObject({
        platform_type: 'CLOUD_API',
        health_status: { can_send_message: 'AVAILABLE' },
      });

      expect(receiver.events()).toEqual(['ACCOUNT_OFFBOARDED']);
      const [got] = receiver.received;
      expect(verifySignature(got!.raw, got!.signature, ['app-secret'])).toBe(true);
      expect(sim.webhooks.map((w) => [w.event, w.dropped])).toEqual([
        ['ACCOUNT_OFFBOARDED', false],
        ['ACCOUNT_RECONNECTED', true],
      ]);
      // Even a dropped event keeps the WABA's times rising, as Meta's would.
      expect(on.body.entry[0]!.time!).toBeGreaterThan(off.body.entry[0]!.time!);
    } finally {
      await receiver.stop();
    }
  });

  it('plays the same over HTTP: POST /_sim/numbers/:id/lifecycle with dropWebhook, then GET /_sim/webhooks', async () => {
    sim.setMode(PHONE, 'offboarded');
    const res = await fetch(`${sim.url}/_sim/numbers/${PHONE}/lifecycle`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ event: 'ACCOUNT_RECONNECTED', dropWebhook: true }),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ event: 'ACCOUNT_RECONNECTED', dropped: true, phoneNumberId: PHONE });
    expect(await sendStatus()).toBe(200);
    const listed = (await (await fetch(`${sim.url}/_sim/webhooks`)).json()) as { webhooks: WebhookDelivery[] };
    expect(listed.webhooks.map((w) => w.event)).toEqual(['ACCOUNT_RECONNECTED']);
  });

  it('refuses to deliver without a webhook target (409 over HTTP, a throw in process), and leaves the mode alone', async () => {
    sim.setMode(PHONE, 'offboarded');
    await expect(sim.lifecycle(PHONE, 'ACCOUNT_RECONNECTED')).rejects.toThrow(/no webhook target/);
    const res = await fetch(`${sim.url}/_sim/numbers/${PHONE}/lifecycle`, {
      method: 'POST',
      body: JSON.stringify({ event: 'ACCOUNT_RECONNECTED' }),
    });
    expect(res.status).toBe(409);
    expect(sim.numberConfig(PHONE).mode).toBe('offboarded');
  });

  it('a delivery nobody answers resolves with the connection error', async () => {
    const receiver = await startReceiver();
    await receiver.stop(); // a port nobody listens on
    sim.setWebhookTarget({ targetUrl: receiver.url, appSecret: 's' });
    const delivery = await sim.lifecycle(PHONE, 'ACCOUNT_OFFBOARDED');
    expect(delivery).toMatchObject({ dropped: false, error: expect.any(String) });
    expect(delivery.status).toBeUndefined();
  });
});

describe('meta-sim CLI: lost webhooks', () => {
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

  it('scenario --drop reconnect --sim --phone: only ACCOUNT_OFFBOARDED arrives, and the number ends usable', async () => {
    const receiver = await startReceiver();
    try {
      const argv = ['scenario', WABA, '--gap', '10ms', '--target', receiver.url, '--secret', 's'];
      const code = await cli([...argv, '--sim', sim.url, '--phone', PHONE, '--drop', 'reconnect']);
      expect(code).toBe(0);
      expect(receiver.events()).toEqual(['ACCOUNT_OFFBOARDED']);
      expect(sim.numberConfig(PHONE).mode).toBe('normal');
      expect(await sendStatus()).toBe(200);
      expect(logSpy).toHaveBeenCalledWith(expect.stringContaining('ACCOUNT_RECONNECTED → '));
      expect(logSpy).toHaveBeenCalledWith(expect.stringContaining('dropped'));
    } finally {
      await receiver.stop();
    }
  });

  it('offboard --sim --phone switches the number to offboarded and delivers the webhook', async () => {
    const receiver = await startReceiver();
    try {
      const code = await cli([
        'offboard',
        WABA,
        '--target',
        receiver.url,
        '--secret',
        's',
        '--sim',
        sim.url,
        '--phone',
        PHONE,
      ]);
      expect(code).toBe(0);
      expect(receiver.events()).toEqual(['ACCOUNT_OFFBOARDED']);
      expect(sim.numberConfig(PHONE).mode).toBe('offboarded');
    } finally {
      await receiver.stop();
    }
  });

  it('scenario --drop reconnect --app-calling-error 138024: the number ends usable with health_status BLOCKED by its app', async () => {
    const receiver = await startReceiver();
    try {
      const argv = ['scenario', WABA, '--gap', '10ms', '--target', receiver.url, '--secret', 's'];
      const code = await cli([
        ...argv,
        '--sim',
        sim.url,
        '--phone',
        PHONE,
        '--drop',
        'reconnect',
        '--app-calling-error',
        '138024',
      ]);
      expect(code).toBe(0);
      expect(receiver.events()).toEqual(['ACCOUNT_OFFBOARDED']);
      expect(sim.numberConfig(PHONE)).toMatchObject({ mode: 'normal', appCallingErrors: [138024] });
      expect(await sendStatus()).toBe(200);
      expect((await probe('health_status')).json.health_status).toMatchObject({ can_send_message: 'BLOCKED' });
    } finally {
      await receiver.stop();
    }
  });

  it.each([
    [['scenario', WABA, '--secret', 's', '--app-calling-error', '138024'], 'needs --sim and --phone'],
    [
      ['reconnect', WABA, '--secret', 's', '--sim', 'http://127.0.0.1:1', '--phone', PHONE, '--app-calling-error', 'x'],
      'comma list of error codes',
    ],
  ])('exits 2 with usage on a bad --app-calling-error: %j', async (argv, why) => {
    expect(await cli(argv, {})).toBe(2);
    expect(errorSpy).toHaveBeenCalledWith(expect.stringContaining(why));
  });

  it.each([
    [['scenario', WABA, '--secret', 's', '--drop', 'everything']],
    [['scenario', WABA, '--secret', 's', '--sim', 'http://127.0.0.1:1']],
    [['serve', '--webhook-target', 'not a url']],
  ])('exits 2 with usage on bad lost-webhook arguments: %j', async (argv) => {
    expect(await cli(argv, {})).toBe(2);
    expect(errorSpy).toHaveBeenCalledWith(expect.stringContaining('--drop <events>'));
  });
});

describe('Meta simulator: inbound messages and the customer service window', () => {
  const CUSTOMER = '15551230001';
  async function sendTo(to: string, type: 'text' | 'template') {
    const content =
      type === 'text' ? { text: { body: 'hi' } } : { template: { name: 'reengage', language: { code: 'en_US' } } };
    const res = await fetch(`${sim.url}/v25.0/${PHONE}/messages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ messaging_product: 'whatsapp', to, type, ...content }),
    });
    return { status: res.status, json: (await res.json()) as { error?: { code: number } } };
  }

  it('delivers a signed messages webhook with the message timestamp, then refuses free-form sends 24 h after it (131047)', async () => {
    const receiver = await startReceiver();
    try {
      sim.setWebhookTarget({ targetUrl: receiver.url, appSecret: 'app-secret' });
      const delivery = await sim.inbound(PHONE, CUSTOMER, { agoMs: 25 * 3_600_000 });
      expect(delivery).toMatchObject({ status: 200, wabaId: WABA, from: CUSTOMER });
      expect(Math.abs(delivery.timestamp - (Date.now() / 1000 - 25 * 3600))).toBeLessThan(5);
      const [got] = receiver.received;
      expect(verifySignature(got!.raw, got!.signature, ['app-secret'])).toBe(true);
      const value = (JSON.parse(got!.raw.toString('utf8')) as WebhookEnvelope).entry[0]!.changes[0]!;
      expect(value.field).toBe('messages');
      expect(value.value).toMatchObject({
        metadata: { phone_number_id: PHONE },
        messages: [{ from: CUSTOMER, timestamp: String(delivery.timestamp), type: 'text' }],
      });

      expect(await sendTo(CUSTOMER, 'text')).toMatchObject({ status: 400, json: { error: { code: 131047 } } });
      expect((await sendTo(CUSTOMER, 'template')).status).toBe(200);
      expect((await sendTo('15551230002', 'text')).status).toBe(200); // never wrote: not judged

      await sim.inbound(PHONE, CUSTOMER, { agoMs: 60_000 }); // writes again: the window reopens
      expect((await sendTo(CUSTOMER, 'text')).status).toBe(200);
    } finally {
      await receiver.stop();
    }
  });

  it('plays the same from the CLI through a running simulator (inbound <phone> <from> --ago 25h --sim)', async () => {
    const receiver = await startReceiver();
    try {
      sim.setWebhookTarget({ targetUrl: receiver.url, appSecret: 'app-secret' });
      const log = jest.spyOn(console, 'log').mockImplementation(() => undefined);
      try {
        expect(await cli(['inbound', PHONE, '15551230003', '--ago', '25h', '--sim', sim.url])).toBe(0);
      } finally {
        log.mockRestore();
      }
      expect(receiver.received).toHaveLength(1);
      expect((await sendTo('15551230003', 'text')).json.error?.code).toBe(131047);
    } finally {
      await receiver.stop();
    }
  });

  it('answers 409 over HTTP without a webhook target', async () => {
    const res = await fetch(`${sim.url}/_sim/numbers/${PHONE}/inbound`, {
      method: 'POST',
      body: JSON.stringify({ from: '15551230004' }),
    });
    expect(res.status).toBe(409);
    expect((await sendTo('15551230004', 'text')).status).toBe(200);
  });
});

describe('Meta simulator: sends to a business-scoped user id', () => {
  async function sendBody(body: Record<string, unknown>) {
    const res = await fetch(`${sim.url}/v25.0/${PHONE}/messages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ messaging_product: 'whatsapp', type: 'text', text: { body: 'hi' }, ...body }),
    });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  }

  it('accepts recipient instead of to, logs the body as sent, and refuses a malformed one', async () => {
    const ok = await sendBody({ recipient: 'US.13491208655302741918' });
    expect(ok.status).toBe(200);
    expect(ok.json.contacts).toEqual([{ input: 'US.13491208655302741918', user_id: 'US.13491208655302741918' }]);
    const [logged] = sim.log.accepted;
    expect(logged).toMatchObject({ to: 'US.13491208655302741918', body: { recipient: 'US.13491208655302741918' } });
    expect(logged!.body).not.toHaveProperty('to');
    expect((await sendBody({ recipient: '15551234567' })).status).toBe(400);
    expect((await sendBody({})).status).toBe(400);
    // Both: `to` wins.
    await sendBody({ to: '15551230009', recipient: 'US.13491208655302741918' });
    expect(sim.log.accepted[1]?.to).toBe('15551230009');
  });
});
