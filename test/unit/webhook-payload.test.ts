import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { WebhookPayloadError, parseWebhookBody, type ParsedWebhook } from '../../src/adapters/meta/webhook-payload';
import { HOLDING_EVENTS, LIFECYCLE_EVENTS, isLifecycleEvent } from '../../src/contracts';

/** Copies of Meta's documentation examples (see /work/shared/reference/payloads). */
const FIXTURES = path.join(__dirname, '../fixtures/meta');
const fixture = (name: string): unknown => JSON.parse(readFileSync(path.join(FIXTURES, name), 'utf8'));
const fixtureNames = readdirSync(FIXTURES).filter((f) => f.endsWith('.json'));

const WABA = '102290129340398';
const PARTNER_BUSINESS = '2949482758682047';
const CLIENT_WABA = '980198427658004';
const PHONE_NUMBER_ID = '106540352242922';

const envelope = (...entries: unknown[]) => ({ object: 'whatsapp_business_account', entry: entries });
const accountUpdate = (value: Record<string, unknown>) => ({ field: 'account_update', value });

function parse(json: unknown): ParsedWebhook {
  return parseWebhookBody(json);
}

describe('parseWebhookBody: Meta documentation samples', () => {
  it('has the samples on disk', () => {
    expect(fixtureNames.length).toBeGreaterThanOrEqual(30);
  });

  it.each(fixtureNames.filter((f) => f !== 'history_declined_value_only.json'))(
    '%s parses with nothing skipped',
    (name) => {
      const parsed = parse(fixture(name));
      expect(parsed.object).toBe('whatsapp_business_account');
      expect(parsed.skipped).toEqual([]);
    },
  );

  it.each(fixtureNames.filter((f) => f.startsWith('account_update_')))(
    '%s gives exactly one account update with the event and a time in Unix seconds',
    (name) => {
      const json = fixture(name) as { entry: { time: number; changes: { value: { event: string } }[] }[] };
      const parsed = parse(json);
      expect(parsed.accountUpdates).toHaveLength(1);
      const [update] = parsed.accountUpdates;
      expect(update?.event).toBe(json.entry[0]?.changes[0]?.value.event);
      expect(update?.metaTime).toBe(json.entry[0]?.time);
      expect(update?.key).toMatch(/^[0-9a-f]{64}$/);
      expect(parsed.statuses).toEqual([]);
      expect(parsed.otherChanges).toEqual({});
    },
  );

  it('the history sample that is only a change value (no envelope) is refused as not an envelope', () => {
    expect(() => parse(fixture('history_declined_value_only.json'))).toThrow(WebhookPayloadError);
  });

  it('ACCOUNT_OFFBOARDED and ACCOUNT_RECONNECTED take the WABA id from entry[].id', () => {
    for (const name of ['account_update_account_offboarded.json', 'account_update_account_reconnected.json']) {
      const [update] = parse(fixture(name)).accountUpdates;
      expect(update).toMatchObject({ wabaId: WABA, entryId: WABA, metaTime: 1743451903 });
      expect(update?.detail).toBeUndefined();
    }
  });

  it('PARTNER_REMOVED with waba_info takes the WABA id from waba_info, not the partner business in entry[].id', () => {
    const [update] = parse(fixture('account_update_partner_removed.json')).accountUpdates;
    expect(update).toMatchObject({ event: 'PARTNER_REMOVED', wabaId: CLIENT_WABA, entryId: PARTNER_BUSINESS });
  });

  it('PARTNER_REMOVED with disconnection_info carries the reason and initiator in detail, and the raw value', () => {
    const [update] = parse(fixture('account_update_partner_removed_coexistence_disconnection.json')).accountUpdates;
    expect(update?.wabaId).toBe(CLIENT_WABA);
    expect(update?.detail).toBe('disconnection: PRIMARY_INACTIVITY (initiated by SYSTEM)');
    expect(update?.raw).toMatchObject({ disconnection_info: { reason: 'PRIMARY_INACTIVITY', initiated_by: 'SYSTEM' } });
  });

  it('enforcement events carry a short detail (ban state, violation, restriction types)', () => {
    expect(parse(fixture('account_update_disabled_update.json')).accountUpdates[0]?.detail).toBe(
      'ban state: REINSTATE',
    );
    expect(parse(fixture('account_update_account_violation.json')).accountUpdates[0]?.detail).toBe('violation: ADULT');
    expect(parse(fixture('account_update_account_restriction.json')).accountUpdates[0]?.detail).toBe(
      'restrictions: RESTRICTED_BIZ_INITIATED_MESSAGING, RESTRICTED_ADD_PHONE_NUMBER_ACTION',
    );
  });

  it('a sample with object listed after entry parses the same (key order does not matter)', () => {
    const [update] = parse(fixture('account_update_partner_added_manage_webhooks_variant.json')).accountUpdates;
    expect(update).toMatchObject({ event: 'PARTNER_ADDED', wabaId: '495709166956424', entryId: '35602282435505' });
  });

  it('a failed status carries its wamid, recipient, Unix timestamp and errors with details', () => {
    const parsed = parse(fixture('messages_status_failed.json'));
    expect(parsed.statuses).toEqual([
      {
        wabaId: WABA,
        phoneNumberId: PHONE_NUMBER_ID,
        wamid: 'wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI0QUQ2MjA4NEYyRkExNjMyREUA',
        status: 'failed',
        timestamp: 1751142888,
        recipientId: '16505551234',
        errors: [
          {
            code: 131049,
            title: 'This message was not delivered to maintain healthy ecosystem engagement.',
            message: 'This message was not delivered to maintain healthy ecosystem engagement.',
            details: 'In order to maintain a healthy ecosystem engagement, the message failed to be delivered.',
          },
        ],
      },
    ]);
    expect(parsed.accountUpdates).toEqual([]);
    expect(parsed.otherChanges).toEqual({});
    expect(parsed.changesByField).toEqual({ messages: 1 });
  });

  it('a sent status has no errors field and is not counted as another change', () => {
    const parsed = parse(fixture('messages_status_sent.json'));
    expect(parsed.statuses).toHaveLength(1);
    expect(parsed.statuses[0]).toMatchObject({ status: 'sent', timestamp: 1750030073 });
    expect(parsed.statuses[0]).not.toHaveProperty('errors');
    expect(parsed.otherChanges).toEqual({});
  });

  it('coexistence fields (history, echoes, state sync) and value-level message errors are only counted', () => {
    const counts = (name: string) => parse(fixture(name)).otherChanges;
    expect(counts('history_approved_chunk.json')).toEqual({ history: 1 });
    expect(counts('history_media_followup.json')).toEqual({ history: 1 });
    expect(counts('smb_message_echoes_text.json')).toEqual({ smb_message_echoes: 1 });
    expect(counts('smb_app_state_sync_contact_add.json')).toEqual({ smb_app_state_sync: 1 });
    expect(counts('messages_errors_rate_limit.json')).toEqual({ messages: 1 });
  });
});

describe('parseWebhookBody: WABA id rule', () => {
  it('PARTNER_REMOVED without waba_info (onboarding-guide variant) takes the WABA id from entry[].id', () => {
    const parsed = parse(
      envelope({
        id: WABA,
        time: 1748477359,
        changes: [accountUpdate({ event: 'PARTNER_REMOVED', phone_number: '15550783881' })],
      }),
    );
    expect(parsed.accountUpdates).toHaveLength(1);
    expect(parsed.accountUpdates[0]).toMatchObject({ event: 'PARTNER_REMOVED', wabaId: WABA, entryId: WABA });
  });

  it('waba_info without a waba_id is skipped rather than attributed to the partner business in entry[].id', () => {
    const parsed = parse(
      envelope({
        id: PARTNER_BUSINESS,
        time: 1748477359,
        changes: [accountUpdate({ event: 'PARTNER_REMOVED', waba_info: { owner_business_id: '2329417887457253' } })],
      }),
    );
    expect(parsed.accountUpdates).toEqual([]);
    expect(parsed.skipped).toEqual([
      expect.objectContaining({
        entryIndex: 0,
        changeIndex: 0,
        field: 'account_update',
        reason: expect.stringContaining('waba_info.waba_id'),
      }),
    ]);
  });

  it('numeric ids are turned into their decimal strings', () => {
    const parsed = parse(
      envelope({ id: 102290129340398, time: 1743451903, changes: [accountUpdate({ event: 'ACCOUNT_OFFBOARDED' })] }),
    );
    expect(parsed.accountUpdates[0]?.wabaId).toBe(WABA);
  });
});

describe('parseWebhookBody: entry time', () => {
  const offboardedAt = (time: unknown) =>
    parse(envelope({ id: WABA, time, changes: [accountUpdate({ event: 'ACCOUNT_OFFBOARDED' })] })).accountUpdates[0];

  it('accepts time as a numeric string', () => {
    expect(offboardedAt('1743451903')?.metaTime).toBe(1743451903);
  });

  it('reads a time above 1e12 as milliseconds and gives whole seconds', () => {
    expect(offboardedAt(1743451903123)?.metaTime).toBe(1743451903);
    expect(offboardedAt('1743451903123')?.metaTime).toBe(1743451903);
  });

  it('keeps the event but drops a missing or non-numeric time', () => {
    for (const time of [undefined, 'yesterday', -5, null]) {
      const update = offboardedAt(time);
      expect(update?.event).toBe('ACCOUNT_OFFBOARDED');
      expect(update).not.toHaveProperty('metaTime');
    }
  });
});

describe('parseWebhookBody: dedupe keys', () => {
  const offboarded = (time: unknown, value: Record<string, unknown> = { event: 'ACCOUNT_OFFBOARDED' }) =>
    parse(envelope({ id: WABA, time, changes: [accountUpdate(value)] })).accountUpdates[0]?.key;

  it('an identical redelivery gives an identical key', () => {
    const body = readFileSync(
      path.join(FIXTURES, 'account_update_partner_removed_coexistence_disconnection.json'),
      'utf8',
    );
    expect(parse(JSON.parse(body)).accountUpdates[0]?.key).toBe(parse(JSON.parse(body)).accountUpdates[0]?.key);
  });

  it('the same content with keys in another order gives the same key', () => {
    const a = { event: 'PARTNER_REMOVED', waba_info: { waba_id: CLIENT_WABA, owner_business_id: '1' } };
    const b = { waba_info: { owner_business_id: '1', waba_id: CLIENT_WABA }, event: 'PARTNER_REMOVED' };
    expect(offboarded(1748477359, a)).toBe(offboarded(1748477359, b));
  });

  it('a time sent as a string or as milliseconds gives the same key as the same time in seconds', () => {
    expect(offboarded('1743451903')).toBe(offboarded(1743451903));
    expect(offboarded(1743451903000)).toBe(offboarded(1743451903));
  });

  it('a different event, time, WABA or value gives a different key', () => {
    const base = offboarded(1743451903);
    expect(offboarded(1743451903, { event: 'ACCOUNT_RECONNECTED' })).not.toBe(base);
    expect(offboarded(1743451904)).not.toBe(base);
    expect(offboarded(1743451903, { event: 'ACCOUNT_OFFBOARDED', extra: 1 })).not.toBe(base);
    const otherWaba = parse(
      envelope({ id: '999', time: 1743451903, changes: [accountUpdate({ event: 'ACCOUNT_OFFBOARDED' })] }),
    ).accountUpdates[0]?.key;
    expect(otherWaba).not.toBe(base);
  });
});

describe('parseWebhookBody: batched envelopes', () => {
  const status = (id: string, s: string, extra: Record<string, unknown> = {}) => ({
    id,
    status: s,
    timestamp: '1750030073',
    recipient_id: '16505551234',
    ...extra,
  });
  const messagesChange = (value: Record<string, unknown>) => ({
    field: 'messages',
    value: { messaging_product: 'whatsapp', metadata: { phone_number_id: PHONE_NUMBER_ID }, ...value },
  });

  const batch = envelope(
    {
      id: WABA,
      time: 1743451903,
      changes: [
        accountUpdate({ event: 'ACCOUNT_OFFBOARDED' }),
        messagesChange({ statuses: [status('wamid.1', 'sent'), status('wamid.2', 'delivered')] }),
        { field: 'history', value: { history: [] } },
      ],
    },
    {
      id: PARTNER_BUSINESS,
      time: '1748477359',
      changes: [
        accountUpdate({ event: 'PARTNER_REMOVED', waba_info: { waba_id: CLIENT_WABA, owner_business_id: '1' } }),
        accountUpdate({ event: 'SOMETHING_META_ADDS_LATER', new_info: { x: 1 } }),
      ],
    },
    {
      id: WABA,
      time: 1743451999,
      changes: [
        messagesChange({ messages: [{ from: '16505551234', id: 'wamid.in', type: 'text' }], contacts: [] }),
        { field: 'smb_message_echoes', value: { message_echoes: [] } },
        accountUpdate({ event: 'ACCOUNT_RECONNECTED' }),
        messagesChange({
          statuses: [
            status('wamid.3', 'failed', {
              errors: [{ code: '131026', title: 'Message undeliverable' }, { title: 'no code' }],
            }),
          ],
        }),
      ],
    },
  );

  it('hands over every account update in body order with its own WABA id and time', () => {
    const parsed = parse(batch);
    expect(parsed.accountUpdates.map((u) => [u.event, u.wabaId, u.metaTime])).toEqual([
      ['ACCOUNT_OFFBOARDED', WABA, 1743451903],
      ['PARTNER_REMOVED', CLIENT_WABA, 1748477359],
      ['SOMETHING_META_ADDS_LATER', PARTNER_BUSINESS, 1748477359],
      ['ACCOUNT_RECONNECTED', WABA, 1743451999],
    ]);
    expect(new Set(parsed.accountUpdates.map((u) => u.key)).size).toBe(4);
  });

  it('collects every status in body order, numeric-string codes read, code-less errors dropped', () => {
    const parsed = parse(batch);
    expect(parsed.statuses.map((s) => [s.wamid, s.status, s.timestamp])).toEqual([
      ['wamid.1', 'sent', 1750030073],
      ['wamid.2', 'delivered', 1750030073],
      ['wamid.3', 'failed', 1750030073],
    ]);
    expect(parsed.statuses[2]?.errors).toEqual([{ code: 131026, title: 'Message undeliverable' }]);
  });

  it('counts the other changes by field and every change in changesByField', () => {
    const parsed = parse(batch);
    expect(parsed.otherChanges).toEqual({ history: 1, messages: 1, smb_message_echoes: 1 });
    expect(parsed.changesByField).toEqual({ account_update: 4, messages: 3, history: 1, smb_message_echoes: 1 });
    expect(parsed.skipped).toEqual([]);
  });
});

describe('parseWebhookBody: malformed parts', () => {
  it('a wrong change is skipped with a reason and the rest of the body is still used', () => {
    const parsed = parse(
      envelope(
        'not an entry',
        { id: WABA, time: 1, changes: 'nope' },
        {
          id: WABA,
          time: 1743451903,
          changes: [
            { field: 'account_update' },
            accountUpdate({ no_event: true }),
            { value: { event: 'ACCOUNT_OFFBOARDED' } },
            accountUpdate({ event: 'ACCOUNT_OFFBOARDED' }),
            {
              field: 'messages',
              value: {
                metadata: { phone_number_id: PHONE_NUMBER_ID },
                statuses: [{ id: 'wamid.x' }, { id: 'wamid.y', status: 'read', timestamp: 1750030073 }],
              },
            },
            { field: 'messages', value: { statuses: [{ id: 'wamid.z', status: 'read', timestamp: 1 }] } },
          ],
        },
      ),
    );
    expect(parsed.accountUpdates.map((u) => u.event)).toEqual(['ACCOUNT_OFFBOARDED']);
    expect(parsed.statuses).toEqual([
      {
        wabaId: WABA,
        phoneNumberId: PHONE_NUMBER_ID,
        wamid: 'wamid.y',
        status: 'read',
        timestamp: 1750030073,
        recipientId: '',
      },
    ]);
    expect(parsed.skipped.map((s) => [s.entryIndex, s.changeIndex, s.statusIndex])).toEqual([
      [0, undefined, undefined],
      [1, undefined, undefined],
      [2, 0, undefined],
      [2, 1, undefined],
      [2, 2, undefined],
      [2, 4, 0],
      [2, 5, undefined],
    ]);
    for (const s of parsed.skipped) expect(s.reason).toEqual(expect.any(String));
    expect(parsed.skipped[5]?.reason).toMatch(/status/);
    expect(parsed.skipped[6]?.reason).toMatch(/phone_number_id/);
  });

  it.each([
    ['null', null],
    ['an array', [1, 2]],
    ['a string', 'whatsapp_business_account'],
    ['an object without entry', { object: 'whatsapp_business_account' }],
    ['an object whose entry is not an array', { object: 'whatsapp_business_account', entry: {} }],
    ['an object without object', { entry: [] }],
  ])('%s is not an envelope and throws WebhookPayloadError with a reason', (_title, json) => {
    let caught: unknown;
    try {
      parse(json);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(WebhookPayloadError);
    expect((caught as WebhookPayloadError).reason).toEqual(expect.any(String));
  });

  it('an envelope for another object parses (the caller decides to ignore it)', () => {
    const parsed = parse({ object: 'page', entry: [{ id: '1', time: 1, changes: [{ field: 'feed', value: {} }] }] });
    expect(parsed.object).toBe('page');
    expect(parsed.otherChanges).toEqual({ feed: 1 });
  });

  it('a field named __proto__ is counted, not assigned to the prototype', () => {
    const parsed = parse(
      JSON.parse(
        '{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"__proto__","value":{}}]}]}',
      ),
    );
    expect(parsed.otherChanges['__proto__']).toBe(1);
    expect(Object.keys(parsed.otherChanges)).toEqual(['__proto__']);
  });
});

describe('LIFECYCLE_EVENTS', () => {
  it('lists the four events that drive the lifecycle, and isLifecycleEvent recognises only them', () => {
    expect(LIFECYCLE_EVENTS).toEqual(['ACCOUNT_OFFBOARDED', 'ACCOUNT_RECONNECTED', 'PARTNER_REMOVED', 'PARTNER_ADDED']);
    expect(isLifecycleEvent('PARTNER_REMOVED')).toBe(true);
    expect(isLifecycleEvent('PARTNER_ADDED')).toBe(true);
    expect(isLifecycleEvent('PARTNER_APP_INSTALLED')).toBe(false);
    expect(isLifecycleEvent('toString')).toBe(false);
    expect([...HOLDING_EVENTS]).toEqual(['ACCOUNT_OFFBOARDED', 'PARTNER_REMOVED']);
  });

  it("PARTNER_REMOVED's disconnection_info is read as plain fields; PARTNER_ADDED is routed by waba_info.waba_id", () => {
    const parsed = parseWebhookBody({
      object: 'whatsapp_business_account',
      entry: [
        {
          id: '2949482758682047',
          time: 1748477359,
          changes: [
            {
              field: 'account_update',
              value: {
                event: 'PARTNER_REMOVED',
                waba_info: { waba_id: '980198427658004', owner_business_id: '2329417887457253' },
                disconnection_info: { reason: 'PRIMARY_INACTIVITY', initiated_by: 'SYSTEM' },
              },
            },
            {
              field: 'account_update',
              value: { event: 'PARTNER_ADDED', waba_info: { waba_id: '980198427658004' } },
            },
          ],
        },
      ],
    });
    expect(parsed.accountUpdates[0]).toMatchObject({
      wabaId: '980198427658004',
      disconnectionInfo: { reason: 'PRIMARY_INACTIVITY', initiatedBy: 'SYSTEM' },
    });
    expect(parsed.accountUpdates[1]).toMatchObject({ wabaId: '980198427658004', event: 'PARTNER_ADDED' });
    expect(parsed.accountUpdates[1]?.disconnectionInfo).toBeUndefined();
  });
});

describe('parseWebhookBody: inbound messages (the customer service window)', () => {
  /** Meta's "text message received" example, with a second message and a system message beside it. */
  const received = envelope({
    id: WABA,
    changes: [
      {
        field: 'messages',
        value: {
          messaging_product: 'whatsapp',
          metadata: { display_phone_number: '15550783881', phone_number_id: PHONE_NUMBER_ID },
          contacts: [{ profile: { name: 'Sheena Nelson' }, wa_id: '16505551234' }],
          messages: [
            { from: '16505551234', id: 'wamid.a', timestamp: '1749416383', type: 'text', text: { body: 'hi' } },
            { from: '16505559999', id: 'wamid.b', timestamp: 1749416390, type: 'image', image: { id: '1' } },
            { from: '16505551234', id: 'wamid.c', timestamp: '1749416395', type: 'system', system: {} },
            { from: '16505551234', id: 'wamid.d', type: 'text' },
          ],
        },
      },
    ],
  });

  it('reads each customer message with its number, sender and own timestamp; system and time-less ones are left out', () => {
    expect(parse(received).inbound).toEqual([
      { phoneNumberId: PHONE_NUMBER_ID, from: '16505551234', timestamp: 1749416383 },
      { phoneNumberId: PHONE_NUMBER_ID, from: '16505559999', timestamp: 1749416390 },
    ]);
    expect(parse(received).otherChanges).toEqual({ messages: 1 });
  });

  it.each([
    'smb_message_echoes_text.json',
    'smb_message_echoes_edit.json',
    'history_approved_chunk.json',
    'history_media_followup.json',
    'messages_status_sent.json',
    'messages_status_failed.json',
    'messages_errors_rate_limit.json',
  ])('%s opens no window (echoes, history, statuses and errors are not customer messages)', (name) => {
    expect(parse(fixture(name)).inbound).toEqual([]);
  });
});

describe('parseWebhookBody: business-scoped user ids on contacts', () => {
  const withContacts = (contacts: unknown[]) =>
    envelope({
      id: WABA,
      changes: [
        {
          field: 'messages',
          value: {
            messaging_product: 'whatsapp',
            metadata: { phone_number_id: PHONE_NUMBER_ID },
            contacts,
            messages: [{ from: '16505551234', id: 'wamid.a', timestamp: '1749416383', type: 'text' }],
          },
        },
      ],
    });

  it('pairs a contact naming both its phone number and its BSUID', () => {
    const parsed = parse(
      withContacts([
        { profile: { name: 'A' }, wa_id: '16505551234', user_id: 'US.13491208655302741918' },
        { wa_id: '16505550000' },
        { wa_id: '16505550001', user_id: 'not a bsuid' },
        { user_id: 'US.ENT.11815799212886844830' },
      ]),
    );
    expect(parsed.identities).toEqual([{ phone: '16505551234', bsuid: 'US.13491208655302741918' }]);
    expect(parsed.skipped).toEqual([]);
  });
});

describe('parseWebhookBody: inbound messages that name no customer', () => {
  it('leaves out senders and numbers that are not ids (they would name an unstorable window)', () => {
    const value = (phoneNumberId: string, from: string) => ({
      field: 'messages',
      value: {
        metadata: { phone_number_id: phoneNumberId },
        messages: [{ from, id: 'wamid.x', timestamp: '1749416383', type: 'text' }],
      },
    });
    const parsed = parse(
      envelope({
        id: WABA,
        changes: [
          value(PHONE_NUMBER_ID, 'x'.repeat(5_000)),
          value(PHONE_NUMBER_ID, '1555\u0000123'),
          value('not-a-number', '15551234567'),
          value(PHONE_NUMBER_ID, 'US.13491208655302741918'),
        ],
      }),
    );
    expect(parsed.inbound).toEqual([
      { phoneNumberId: PHONE_NUMBER_ID, from: 'US.13491208655302741918', timestamp: 1749416383 },
    ]);
  });
});
