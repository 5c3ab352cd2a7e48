import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createGraphClient, type GraphClientHandle } from '../../src/adapters/graph/client';
import { GraphApiError, NETWORK_ERROR_CODE, UNEXPECTED_RESPONSE_CODE } from '../../src/adapters/graph/errors';
import { startMetaSimulator, type MetaSimulator } from '../../tools/meta-sim/server';
import type { MessageContent } from '../../src/contracts';

const TOKEN = 'system-user-token';
const WABA = '102290129340398';
const hello: MessageContent = { type: 'text', text: { body: 'hello' } };

let sim: MetaSimulator;
let graph: GraphClientHandle;
let numberSeq = 0;
/** A fresh phone number id per test, so limits and modes never leak between tests. */
let phone: string;

beforeAll(async () => {
  sim = await startMetaSimulator({ token: TOKEN });
  graph = clientFor(sim.url);
});

afterAll(async () => {
  graph.close();
  await sim.stop();
});

beforeEach(() => {
  phone = `1065403522${String(++numberSeq).padStart(5, '0')}`;
});

function clientFor(baseUrl: string, extra: { timeoutMs?: number; token?: string; fetchImpl?: typeof fetch } = {}) {
  return createGraphClient({
    baseUrl,
    version: 'v25.0',
    tokenFor: () => extra.token ?? TOKEN,
    timeoutMs: extra.timeoutMs ?? 5_000,
    fetchImpl: extra.fetchImpl,
  });
}

const send = (to = '+16505551234', content: MessageContent = hello, client = graph) =>
  client.sendMessage({ wabaId: WABA, phoneNumberId: phone, to, content });

/** Resolves to the GraphApiError the promise rejects with (fails the test if it resolves). */
async function graphError(promise: Promise<unknown>): Promise<GraphApiError> {
  const outcome = await promise.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
  if (!('error' in outcome)) throw new Error(`expected a GraphApiError, got ${JSON.stringify(outcome.value)}`);
  expect(outcome.error).toBeInstanceOf(GraphApiError);
  return outcome.error as GraphApiError;
}

describe('Graph client against the Meta simulator', () => {
  it('sends a text message in Cloud API shape and reads wamid and wa_id from the answer', async () => {
    const result = await send('+16505551234');
    expect(result.wamid).toMatch(/^wamid\./);
    expect(result.waId).toBe('16505551234');
    expect(result.messageStatus).toBeUndefined();
    const recorded = sim.log.accepted.find((m) => m.wamid === result.wamid);
    expect(recorded?.body).toEqual({
      messaging_product: 'whatsapp',
      recipient_type: 'individual',
      to: '+16505551234',
      type: 'text',
      text: { body: 'hello' },
    });
  });

  it('sends a template and returns message_status when Meta gives one', async () => {
    sim.setNumber(phone, { messageStatus: 'held_for_quality_assessment' });
    const template: MessageContent = {
      type: 'template',
      template: { name: 'order_confirmation', language: { code: 'en_US' } },
    };
    const result = await send('+16505551234', template);
    expect(result.messageStatus).toBe('held_for_quality_assessment');
    const recorded = sim.log.accepted.find((m) => m.wamid === result.wamid);
    expect(recorded?.type).toBe('template');
    expect(recorded?.body.template).toEqual(template.template);
  });

  it('a burst over the throughput cap gets 130429 (retry, pace the number) for the excess', async () => {
    sim.setNumber(phone, { throughputPerSec: 5, pairBurst: 0 });
    const started = performance.now();
    const outcomes = await Promise.allSettled(Array.from({ length: 12 }, (_, i) => send(`+1650555${1000 + i}`)));
    const elapsedMs = performance.now() - started;
    const rejected = outcomes.flatMap((o) => (o.status === 'rejected' ? [o.reason as GraphApiError] : []));
    // 5 at once, plus one per 200 ms the burst took (a few ms normally; tolerant of a slow CI box).
    expect(outcomes.length - rejected.length).toBeGreaterThanOrEqual(5);
    expect(outcomes.length - rejected.length).toBeLessThanOrEqual(5 + Math.ceil(elapsedMs / 200));
    expect(rejected.length).toBeGreaterThan(0);
    for (const err of rejected) {
      expect(err).toMatchObject({ code: 130429, errorClass: 'retry', scope: 'phone_number', httpStatus: 400 });
      expect(err.fbtraceId).toBeTruthy();
    }
  });

  it('the pair limit refuses one recipient with 131056 (pace that recipient) while others still go', async () => {
    sim.setNumber(phone, { pairBurst: 3, pairRefillMs: 60_000 });
    for (let i = 0; i < 3; i++) await send('+16505550001');
    const err = await graphError(send('+16505550001'));
    expect(err).toMatchObject({ code: 131056, errorClass: 'retry', scope: 'recipient', reason: 'pair_rate_limit' });
    await expect(send('+16505550002')).resolves.toHaveProperty('wamid');
  });

  it('an offboarded number answers 133010: account_unusable', async () => {
    sim.setMode(phone, 'offboarded');
    const err = await graphError(send());
    expect(err).toMatchObject({ code: 133010, errorClass: 'account_unusable', httpStatus: 400 });
    expect(err.toMetaErrorInfo()).toMatchObject({ code: 133010, httpStatus: 400 });
  });

  it('an offboarded number configured with 100/33 is account_unusable too', async () => {
    sim.setMode(phone, 'offboarded', { code: 100, subcode: 33 });
    const err = await graphError(send());
    expect(err).toMatchObject({ code: 100, subcode: 33, errorClass: 'account_unusable', reason: 'access_lost' });
  });

  it('partner removed: sends and the phone probe answer 100/33', async () => {
    sim.setMode(phone, 'partner_removed');
    expect(await graphError(send())).toMatchObject({ code: 100, subcode: 33, errorClass: 'account_unusable' });
    expect(await graphError(graph.getPhoneNumber(phone, WABA))).toMatchObject({ code: 100, subcode: 33 });
  });

  it('injected 503s are retry errors, and the number recovers after them', async () => {
    sim.failNext(phone, 2, 503);
    for (let i = 0; i < 2; i++) {
      const err = await graphError(send());
      expect(err).toMatchObject({ code: 2, httpStatus: 503, errorClass: 'retry' });
    }
    await expect(send()).resolves.toHaveProperty('wamid');
  });

  it('a 502 HTML page becomes an unexpected-answer error classified retry, not a crash', async () => {
    sim.failNext(phone, 1, 502);
    const err = await graphError(send());
    expect(err).toMatchObject({ code: UNEXPECTED_RESPONSE_CODE, httpStatus: 502, errorClass: 'retry' });
    expect(err.details).toContain('Bad Gateway');
  });

  it('a non-JSON 4xx body is permanent; a 200 without messages[0].id is retry and may have sent', async () => {
    sim.scriptErrors(phone, [{ code: 0, httpStatus: 404, rawBody: 'Not Found' }]);
    expect(await graphError(send())).toMatchObject({
      code: UNEXPECTED_RESPONSE_CODE,
      httpStatus: 404,
      errorClass: 'permanent',
      mayHaveBeenSent: false,
    });
    const garbled = clientFor(sim.url, { fetchImpl: async () => new Response('{"messages":[]}', { status: 200 }) });
    expect(await graphError(send(undefined, undefined, garbled))).toMatchObject({
      code: UNEXPECTED_RESPONSE_CODE,
      httpStatus: 200,
      errorClass: 'retry',
      mayHaveBeenSent: true,
    });
  });

  it('a scripted Meta error comes back with its code, subcode, details and class', async () => {
    sim.scriptErrors(phone, [
      { code: 131047, details: 'Message failed to send because more than 24 hours have passed' },
    ]);
    const err = await graphError(send());
    expect(err).toMatchObject({ code: 131047, errorClass: 'permanent', reason: 'service_window_closed' });
    expect(err.details).toContain('24 hours');
  });

  it('a wrong token gets Meta OAuth error 190 with HTTP 401: account_unusable', async () => {
    const wrong = clientFor(sim.url, { token: 'expired-token' });
    const err = await graphError(send(undefined, undefined, wrong));
    expect(err).toMatchObject({ code: 190, httpStatus: 401, errorClass: 'account_unusable', reason: 'auth_failed' });
    wrong.close();
  });

  it('an invalid message (empty text) is refused with code 100: permanent', async () => {
    const err = await graphError(send(undefined, { type: 'text', text: { body: '' } }));
    expect(err).toMatchObject({ code: 100, httpStatus: 400, errorClass: 'permanent' });
  });

  it('a refused connection is a retry network error that did not send', async () => {
    const closedPort = await freePort();
    const client = clientFor(`http://127.0.0.1:${closedPort}`);
    const err = await graphError(send(undefined, undefined, client));
    expect(err).toMatchObject({ code: NETWORK_ERROR_CODE, errorClass: 'retry', details: 'ECONNREFUSED' });
    expect(err.mayHaveBeenSent).toBe(false);
  });

  it('an answer slower than timeoutMs is a retry network error that may have sent', async () => {
    sim.setNumber(phone, { latencyMs: 300 });
    const impatient = clientFor(sim.url, { timeoutMs: 50 });
    const err = await graphError(send(undefined, undefined, impatient));
    expect(err).toMatchObject({ code: NETWORK_ERROR_CODE, errorClass: 'retry', details: 'timeout' });
    expect(err.mayHaveBeenSent).toBe(true);
    impatient.close();
  });

  it('reads the phone number state', async () => {
    sim.setNumber(phone, { isOnBizApp: true, platformType: 'CLOUD_API' });
    await expect(graph.getPhoneNumber(phone, WABA)).resolves.toEqual({
      id: phone,
      isOnBizApp: true,
      platformType: 'CLOUD_API',
    });
  });

  it('reuses connections: 300 sends with 10 in flight open at most 10 connections', async () => {
    const own = await startMetaSimulator({ defaults: { pairBurst: 0 } });
    const client = clientFor(own.url);
    try {
      let next = 0;
      const worker = async () => {
        while (next < 300) {
          next++;
          await client.sendMessage({ wabaId: WABA, phoneNumberId: phone, to: `+1650555${next}`, content: hello });
        }
      };
      await Promise.all(Array.from({ length: 10 }, worker));
      expect(own.stats()).toMatchObject({ requests: 300, accepted: 300 });
      expect(own.stats().connections).toBeLessThanOrEqual(10);
    } finally {
      client.close();
      await own.stop();
    }
  });
});

/** A port nothing listens on (bound then released). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
