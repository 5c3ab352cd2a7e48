import { sendWebhook } from '../../tools/meta-sim/server';
import { eventually, startStack, uniqueDigits, type Stack } from '../support/stack';

/**
 * Poison deliveries: a signed delivery carrying a change the store cannot take as a document
 * (`$`/`.`/NUL keys, nested arrays, lone surrogates, numbers out of range) must not be refused as a
 * whole (Meta would redeliver it forever). Each shape is batched next to a legitimate
 * ACCOUNT_OFFBOARDED: the delivery is answered 200, the offboarding applies, the odd change is
 * recorded in `account_events` with its value as JSON text.
 */

let stack: Stack;
beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => {
  await stack?.stop();
});

/** Raw JSON text of the odd change's `value` (text, so numbers out of double range can be sent). */
const POISON_VALUES: Record<string, string> = {
  'a $-operator key': '{"event":"MM_LITE_TERMS_SIGNED","filter":{"$gt":""}}',
  'a top-level $ key': '{"event":"MM_LITE_TERMS_SIGNED","$where":"sleep(1000)"}',
  'a dotted key': '{"event":"MM_LITE_TERMS_SIGNED","a.b":{"c.d":1}}',
  'a NUL byte in a key': '{"event":"MM_LITE_TERMS_SIGNED","k\\u0000ey":1}',
  'a NUL byte in the event name': '{"event":"MM_LITE\\u0000TERMS"}',
  'a nested array': '{"event":"MM_LITE_TERMS_SIGNED","coords":[[1,1],[2,[3]]]}',
  'lone surrogates': '{"event":"MM_LITE_\\ud800TERMS","note":"\\udc00x","\\ud83d":"k"}',
  'huge numbers': '{"event":"MM_LITE_TERMS_SIGNED","big":1e400,"neg":-1e400,"long":123456789012345678901234567890}',
  'an empty key': '{"event":"MM_LITE_TERMS_SIGNED","":{"":[]}}',
  'deep nesting': `{"event":"MM_LITE_TERMS_SIGNED","deep":${'['.repeat(40)}${']'.repeat(40)}}`,
};

async function postText(text: string): Promise<number> {
  return (await sendWebhook({ targetUrl: stack.webhookUrl, appSecret: stack.appSecret, body: text })).status;
}

describe('a delivery carrying a change the store cannot take as a document', () => {
  for (const [name, poison] of Object.entries(POISON_VALUES)) {
    it(`with ${name}: answered 200, the batched ACCOUNT_OFFBOARDED applies, the odd change is recorded`, async () => {
      const good = uniqueDigits();
      const odd = uniqueDigits();
      const time = Math.floor(Date.now() / 1000);
      const text =
        `{"object":"whatsapp_business_account","entry":[` +
        `{"id":"${odd}","time":${time},"changes":[{"field":"account_update","value":${poison}}]},` +
        `{"id":"${good}","time":${time},"changes":[{"field":"account_update","value":{"event":"ACCOUNT_OFFBOARDED"}}]}]}`;
      expect(await postText(text)).toBe(200);
      await eventually(async () => (await stack.rt.c.wabas.findOne({ _id: good }))?.state === 'offboarded');
      // The relay audits the delivery's other events once its lifecycle events are handed over.
      await eventually(async () => (await stack.rt.c.accountEvents.countDocuments({ wabaId: odd })) > 0);
      const recorded = await stack.rt.c.accountEvents.find({ wabaId: odd }).toArray();
      expect(recorded).toHaveLength(1);
      expect(recorded[0]?.outcome).toBe('recorded');
      expect(typeof recorded[0]?.raw).toBe('string');
      expect(JSON.parse(recorded[0]!.raw)).toEqual(JSON.parse(poison));
      // The redelivery is a duplicate, not a second record.
      expect(await postText(text)).toBe(200);
      await eventually(async () => (await stack.rt.c.outbox.countDocuments({})) === 0);
      expect(await stack.rt.c.accountEvents.countDocuments({ wabaId: odd })).toBe(1);
    });
  }

  it('an ACCOUNT_OFFBOARDED naming a WABA id no workflow can carry is recorded as refused and counted as unusable', async () => {
    const good = uniqueDigits();
    const odd = `${uniqueDigits()}\\u0000\\ud800 x`;
    const time = Math.floor(Date.now() / 1000);
    const text =
      `{"object":"whatsapp_business_account","entry":[` +
      `{"id":"${odd}","time":${time},"changes":[{"field":"account_update","value":{"event":"ACCOUNT_OFFBOARDED"}}]},` +
      `{"id":"${good}","time":${time},"changes":[{"field":"account_update","value":{"event":"ACCOUNT_OFFBOARDED"}}]}]}`;
    expect(await postText(text)).toBe(200);
    await eventually(async () => (await stack.rt.c.wabas.findOne({ _id: good }))?.state === 'offboarded');
    const refused = await eventually(
      async () => (await stack.rt.c.accountEvents.findOne({ outcome: 'refused' })) ?? undefined,
    );
    expect(refused).toMatchObject({ event: 'ACCOUNT_OFFBOARDED', outcome: 'refused' });
    const metrics = await (await fetch(`${stack.url}/metrics`)).text();
    expect(metrics).toMatch(/^coexist_relay_webhook_unusable_total 1$/m);
  });

  it('a failed status whose Meta-provided error parts carry $, . and NUL keys is stored; the offboarding applies', async () => {
    const good = uniqueDigits();
    const waba = uniqueDigits();
    const time = Math.floor(Date.now() / 1000);
    const wamid = `wamid.${uniqueDigits()}`;
    const text =
      `{"object":"whatsapp_business_account","entry":[` +
      `{"id":"${waba}","changes":[{"field":"messages","value":{"messaging_product":"whatsapp",` +
      `"metadata":{"phone_number_id":"106540352242922","$gt":""},` +
      `"statuses":[{"id":"${wamid}","status":"failed","timestamp":"${time}","recipient_id":"1555",` +
      `"conversation":{"$set":{"a.b":[[1]]}},` +
      `"errors":[{"code":131049,"title":"t\\u0000\\ud800","message":"m","error_data":{"details":"d","$x":1,"a.b":2},` +
      `"href":{"$ne":1},"k\\u0000":[[2]]},{"code":1e400},{"code":"131049","title":{"$gt":""}}]}]}}]},` +
      `{"id":"${good}","time":${time},"changes":[{"field":"account_update","value":{"event":"ACCOUNT_OFFBOARDED"}}]}]}`;
    expect(await postText(text)).toBe(200);
    await eventually(async () => (await stack.rt.c.wabas.findOne({ _id: good }))?.state === 'offboarded');
    const stored = await stack.rt.c.messageStatuses.findOne({ _id: `${wamid}:failed` });
    expect(stored).toMatchObject({ wamid, status: 'failed', wabaId: waba });
    expect(stored?.errors?.[0]).toMatchObject({ code: 131049, message: 'm', details: 'd' });
  });
});
