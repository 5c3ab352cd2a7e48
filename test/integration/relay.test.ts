import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { sendWebhook } from '../../tools/meta-sim/server';
import { signBody } from '../../src/adapters/meta/signature';
import { endpoint, type Received } from '../support/receiver';
import { eventually, startStack, uniqueDigits, type Stack } from '../support/stack';

const secret = (): string => `whsec_${randomBytes(32).toString('base64')}`;
const fixture = (name: string): string =>
  fs.readFileSync(path.join(__dirname, '..', 'fixtures', 'meta', `${name}.json`), 'utf8');

/** Every delivery's body, as Meta would send it, with the WABA id put in `entry[].id`. */
function mixedBatch(wabaId: string): string[] {
  const withWaba = (text: string): string => {
    const body = JSON.parse(text) as { entry: { id: string; time?: number }[] };
    for (const e of body.entry) e.id = wabaId;
    return JSON.stringify(body);
  };
  const inbound = {
    object: 'whatsapp_business_account',
    entry: [
      {
        id: wabaId,
        changes: [
          {
            field: 'messages',
            value: {
              messaging_product: 'whatsapp',
              metadata: { display_phone_number: '15550001111', phone_number_id: '106540352242922' },
              contacts: [{ profile: { name: 'Ana' }, wa_id: '16505551234' }],
              messages: [
                {
                  from: '16505551234',
                  id: 'wamid.inbound1',
                  timestamp: '1749416383',
                  type: 'text',
                  text: { body: 'hi' },
                },
              ],
            },
          },
        ],
      },
    ],
  };
  const skipped = {
    object: 'whatsapp_business_account',
    entry: [{ id: wabaId, changes: [{ field: 'account_update' }] }],
  };
  return [
    JSON.stringify(inbound),
    withWaba(fixture('smb_message_echoes_text')),
    withWaba(fixture('history_approved_chunk')),
    withWaba(fixture('messages_status_sent')),
    withWaba(fixture('account_update_account_offboarded')),
    JSON.stringify(skipped),
    withWaba(fixture('smb_app_state_sync_contact_add')),
  ];
}

describe('relay: every Meta delivery forwarded, byte for byte, signed', () => {
  let stack: Stack;
  let inbox: Awaited<ReturnType<typeof endpoint>>;
  let crm: Awaited<ReturnType<typeof endpoint>>;
  let events: Awaited<ReturnType<typeof endpoint>>;
  const eventsSecret = secret();
  const inboxSecret = secret();
  const crmNew = secret();
  const crmOld = secret();
  beforeAll(async () => {
    inbox = await endpoint();
    crm = await endpoint();
    events = await endpoint();
    stack = await startStack({
      env: {
        // A send's answer can be lost (the in-doubt case): our timeout, then one resend after the grace.
        GRAPH_API_TIMEOUT_MS: '1500',
        IN_DOUBT_GRACE_MS: '2000',
        FORWARD_BACKLOG_ALERT_AGE: '2s',
        FORWARD_TARGETS: JSON.stringify([
          { name: 'inbox', url: inbox.url, secrets: [inboxSecret] },
          {
            name: 'crm',
            url: crm.url,
            secrets: [crmNew, crmOld],
            fields: ['messages', 'account_update', 'history', 'smb_message_echoes', 'smb_app_state_sync'],
          },
          { name: 'events', url: events.url, secrets: [eventsSecret], fields: ['coexist_relay'] },
        ]),
      },
    });
  });
  afterAll(async () => {
    await stack?.stop();
    await inbox?.stop();
    await crm?.stop();
    await events?.stop();
  });

  it('delivers a mixed batch to two receivers, one down for a while, in order, each once by webhook-id', async () => {
    const wabaId = uniqueDigits();
    const bodies = mixedBatch(wabaId);
    crm.state.down = true;
    for (const body of bodies) {
      const r = await sendWebhook({ targetUrl: stack.webhookUrl, appSecret: stack.appSecret, body });
      expect(r.status).toBe(200);
    }
    // The inbox gets everything while the CRM is down; the ack never waited for either.
    await eventually(async () => inbox.got.length >= bodies.length, 30_000);
    expect(crm.got).toHaveLength(0);
    await eventually(
      async () => (await stack.ops('GET', '/v1/deliveries?target=crm&state=pending')).json.deliveries,
      10_000,
    );
    // A target down past FORWARD_BACKLOG_ALERT_AGE alerts (on /metrics; logged once); the inbox does not.
    const gauge = async (name: string, target: string): Promise<number> => {
      const text = await (await fetch(`${stack.url}/metrics`)).text();
      const line = text.split('\n').find((l) => l.startsWith(`${name}{target="${target}"}`));
      return Number(line?.split(' ').pop());
    };
    await eventually(async () => (await gauge('coexist_relay_forward_backlog_alerting', 'crm')) === 1, 15_000);
    expect(await gauge('coexist_relay_forward_oldest_pending_age_seconds', 'crm')).toBeGreaterThan(2);
    expect(await gauge('coexist_relay_forward_backlog_alerting', 'inbox')).toBe(0);
    // Kept only for the CRM now, in its own entries: out of the lifecycle relay's sweep, so they cannot starve newer deliveries.
    await eventually(async () => (await stack.rt.c.outbox.countDocuments({})) === 0, 30_000);
    expect(await stack.rt.c.forwards.countDocuments({ target: 'crm', wabaIds: wabaId })).toBe(bodies.length);
    crm.state.down = false;
    await eventually(async () => crm.got.length >= bodies.length, 60_000);
    await eventually(async () => (await gauge('coexist_relay_forward_backlog_alerting', 'crm')) === 0, 15_000);

    for (const [name, ep, secrets] of [
      ['inbox', inbox, [inboxSecret]],
      ['crm', crm, [crmNew, crmOld]],
    ] as const) {
      const byId = new Map<string, Received>();
      for (const r of ep.got) if (!byId.has(r.id)) byId.set(r.id, r);
      // Once each after dedupe by webhook-id, in arrival order, byte for byte.
      expect({ name, bodies: [...byId.values()].map((r) => r.raw.toString('utf8')) }).toEqual({ name, bodies });
      for (const r of byId.values()) {
        // Meta's own signature, for receivers that verify Meta's.
        expect(r.headers['x-hub-signature-256']).toBe(signBody(r.raw, stack.appSecret));
        // Standard Webhooks, verified by the stock library with each secret of the rotation.
        for (const s of secrets) expect(() => new Webhook(s).verify(r.raw, r.headers)).not.toThrow();
      }
    }
    // The lifecycle event in the batch was applied too.
    await eventually(async () => (await stack.rt.c.wabas.findOne({ _id: wabaId }))?.state === 'offboarded');
    const delivered = await stack.ops('GET', `/v1/deliveries?wabaId=${wabaId}&state=delivered&limit=100`);
    const rows = delivered.json.deliveries as { target: string }[];
    expect(rows.filter((r) => r.target !== 'events')).toHaveLength(2 * bodies.length);
    // Nothing is left pending, and the outbox let go of every delivery.
    await eventually(async () => (await stack.rt.c.forwards.countDocuments({})) === 0, 15_000);
    await eventually(async () => (await stack.rt.c.outbox.countDocuments({})) === 0, 45_000);
  });

  it('replays a time range from the archive to one target: the same bytes and webhook-ids, in arrival order', async () => {
    const wabaId = uniqueDigits();
    const bodies = mixedBatch(wabaId).slice(0, 3); // inbound message, echo, history: no lifecycle event
    const since = new Date(Date.now() - 1_000).toISOString();
    for (const body of bodies)
      expect((await sendWebhook({ targetUrl: stack.webhookUrl, appSecret: stack.appSecret, body })).status).toBe(200);
    const mine = (ep: typeof inbox) => ep.got.filter((r) => r.raw.toString('utf8').includes(wabaId));
    await eventually(async () => mine(inbox).length >= 3 && mine(crm).length >= 3, 30_000);
    // Forwarded everywhere: into the archive (each target's `forwarded` row, with the bytes it got).
    await eventually(
      async () => (await stack.rt.c.forwarded.countDocuments({ wabaIds: wabaId, raw: { $exists: true } })) === 6,
      30_000,
    );
    const first = [...new Map(mine(inbox).map((r) => [r.id, r])).values()];
    expect(first.map((r) => r.raw.toString('utf8'))).toEqual(bodies);

    const until = new Date(Date.now() + 1_000).toISOString();
    const replay = await stack.ops('POST', '/v1/deliveries/replay', { since, until, target: 'inbox', wabaId });
    expect(replay).toEqual({ status: 200, json: { deliveries: 3, forwards: 3 } });
    await eventually(async () => mine(inbox).length >= 6, 30_000);
    const again = mine(inbox).slice(first.length);
    expect(again.map((r) => [r.id, r.raw.toString('utf8')])).toEqual(first.map((r) => [r.id, r.raw.toString('utf8')]));
    for (const r of again) expect(() => new Webhook(inboxSecret).verify(r.raw, r.headers)).not.toThrow();
    // The replayed deliveries leave the forward entries again (never the outbox); only the target
    // asked for got them (checked once nothing of them is left to forward).
    await eventually(async () => (await stack.rt.c.forwards.countDocuments({ wabaIds: wabaId })) === 0, 30_000);
    expect(await stack.rt.c.outbox.countDocuments({ wabaIds: wabaId })).toBe(0);
    expect(mine(crm)).toHaveLength(3);

    // An empty range replays nothing; a bad time or an unknown target is refused with a reason.
    const empty = await stack.ops('POST', '/v1/deliveries/replay', { since: until, until: since });
    expect(empty).toEqual({ status: 200, json: { deliveries: 0, forwards: 0 } });
    const bad = await stack.ops('POST', '/v1/deliveries/replay', { since: 'yesterday', until });
    expect(bad.status).toBe(400);
    expect(bad.json.error).toMatchObject({ code: 'invalid_request', message: expect.stringContaining('since') });
    const unknown = await stack.ops('POST', '/v1/deliveries/replay', { since, until, target: 'nope' });
    expect({ status: unknown.status, code: (unknown.json.error as { code: string }).code }).toEqual({
      status: 404,
      code: 'unknown_target',
    });
  });

  it('tells a target that asks for service events when a gate closes and reopens, each event once, as the catalog says', async () => {
    const wabaId = uniqueDigits();
    const mine = () => events.got.filter((r) => r.raw.toString('utf8').includes(wabaId));
    expect(await stack.accountUpdate(wabaId, 'ACCOUNT_OFFBOARDED')).toBe(200);
    await eventually(async () => mine().length >= 1, 30_000);
    expect(await stack.accountUpdate(wabaId, 'ACCOUNT_RECONNECTED')).toBe(200);
    await eventually(async () => mine().some((r) => r.raw.toString('utf8').includes('waba.gate_opened')), 30_000);

    const byId = new Map(mine().map((r) => [r.id, JSON.parse(r.raw.toString('utf8')) as Record<string, unknown>]));
    expect([...byId.values()].map((e) => e.type)).toEqual(['waba.gate_closed', 'waba.gate_opened']);
    for (const [id, e] of byId) {
      expect(e.id && id).toBeTruthy();
      expect(e.wabaId).toBe(wabaId);
    }
    for (const r of mine()) {
      expect(() => new Webhook(eventsSecret).verify(r.raw, r.headers)).not.toThrow();
      expect(r.headers['x-hub-signature-256']).toBeUndefined();
    }
    // The catalog the API serves describes them.
    const catalog = (await (await fetch(`${stack.url}/v1/events/catalog`)).json()) as {
      events: Record<string, unknown>;
    };
    expect(Object.keys(catalog.events)).toEqual(
      expect.arrayContaining(['waba.gate_closed', 'waba.gate_opened', 'waba.escalated']),
    );
    // Meta's deliveries do not reach a target that asked only for service events.
    expect(events.got.some((r) => r.raw.toString('utf8').includes('whatsapp_business_account'))).toBe(false);
  });

  it('tells that target each message outcome: sent, failed with Meta code, queued then sent, in doubt then sent, once per event id', async () => {
    const wabaId = uniqueDigits();
    const phone = uniqueDigits('3');
    await stack.register(phone, wabaId, { coexistence: true });
    const send = async (body: string) =>
      (await stack.send({ phoneNumberId: phone, to: '15550001111', type: 'text', text: { body } })).json.id as string;
    const mine = () =>
      events.got
        .map(
          (r) =>
            JSON.parse(r.raw.toString('utf8')) as {
              id: string;
              type: string;
              wabaId: string;
              data: Record<string, unknown>;
            },
        )
        .filter((e) => e.wabaId === wabaId && e.type.startsWith('message.'));
    const typesOf = (messageId: string) => [
      ...new Set(
        mine()
          .filter((e) => e.data.messageId === messageId)
          .map((e) => e.type),
      ),
    ];

    const direct = await send('direct');
    await eventually(async () => typesOf(direct).includes('message.sent'), 30_000);
    expect(mine().find((e) => e.data.messageId === direct && e.type === 'message.sent')?.data.wamid).toMatch(
      /^wamid\./,
    );

    stack.sim.scriptErrors(phone, [{ code: 131026, details: 'Message undeliverable' }]);
    const refused = await send('refused');
    await eventually(async () => typesOf(refused).includes('message.failed'), 30_000);
    expect(mine().find((e) => e.data.messageId === refused)?.data.code).toBe(131026);

    expect(await stack.accountUpdate(wabaId, 'ACCOUNT_OFFBOARDED')).toBe(200);
    await eventually(async () => (await stack.rt.c.wabas.findOne({ _id: wabaId }))?.state === 'offboarded', 30_000);
    const held = await send('held');
    await eventually(async () => typesOf(held).includes('message.queued'), 30_000);
    expect(await stack.accountUpdate(wabaId, 'ACCOUNT_RECONNECTED')).toBe(200);
    await eventually(async () => typesOf(held).includes('message.sent'), 30_000);
    expect(typesOf(held)).toEqual(['message.queued', 'message.sent']);

    // Its answer lost (accepted by Meta, answered after our timeout): in doubt, told once; then sent.
    // Sent once the drain is over (else it queues behind it, and is told `queued` first).
    await eventually(async () => (await stack.rt.c.wabas.findOne({ _id: wabaId }))?.state === 'connected', 30_000);
    stack.sim.setNumber(phone, { latencyMs: 2_500 });
    const lost = await send('lost answer');
    await eventually(async () => typesOf(lost).includes('message.in_doubt'), 30_000);
    stack.sim.setNumber(phone, { latencyMs: 0 });
    await eventually(async () => typesOf(lost).includes('message.sent'), 30_000);
    expect(typesOf(lost)).toEqual(['message.in_doubt', 'message.sent']);
    // An id names one event (a receiver that dedupes by id keeps each outcome once).
    const typesById = new Map<string, Set<string>>();
    for (const e of mine()) typesById.set(e.id, (typesById.get(e.id) ?? new Set()).add(e.type));
    expect([...typesById.values()].every((t) => t.size === 1)).toBe(true);
    expect(typesById.size).toBe(6); // direct: sent; refused: failed; held: queued, sent; lost: in_doubt, sent
  });
});
