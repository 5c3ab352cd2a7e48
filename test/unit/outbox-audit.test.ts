import { parseWebhookBody } from '../../src/adapters/meta/webhook-payload';
import { accountUpdateRecords, auditOfDelivery } from '../../src/lifecycle/ingest';

/** A delivery with a lifecycle event, informational ones, a refused id and content FerretDB cannot store as fields. */
const body = {
  object: 'whatsapp_business_account',
  entry: [
    { id: '1001', time: 1_700_000_000, changes: [{ field: 'account_update', value: { event: 'ACCOUNT_OFFBOARDED' } }] },
    {
      id: '1001',
      time: 1_700_000_001,
      changes: [
        {
          field: 'account_update',
          value: { event: 'ACCOUNT_VIOLATION', violation_info: { $gt: '', 'a.b': [[1, 2]], 'nul\u0000': 1e308 } },
        },
      ],
    },
    {
      id: 'bad id\u0000',
      time: 1_700_000_002,
      changes: [{ field: 'account_update', value: { event: 'PARTNER_REMOVED' } }],
    },
  ],
};

describe('outbox audit: derived from the stored raw body at the relay', () => {
  const raw = Buffer.from(JSON.stringify(body));
  const receivedAt = '2026-12-01T00:00:00.000Z';
  const sorted = accountUpdateRecords(parseWebhookBody(JSON.parse(raw.toString('utf8'))), receivedAt, 'd1');

  it('sorts lifecycle events from the rest, counting a refused id', () => {
    expect(sorted.events.map((e) => e.type)).toEqual(['ACCOUNT_OFFBOARDED']);
    expect(sorted.audit.map((a) => [a.event, a.outcome])).toEqual([
      ['ACCOUNT_VIOLATION', 'recorded'],
      ['PARTNER_REMOVED', 'refused'],
    ]);
    expect(sorted.unusable).toBe(1);
    expect(JSON.parse(sorted.audit[0]!.raw)).toEqual(body.entry[1]!.changes[0]!.value);
  });

  it('without the audit documents (the sink, with the body stored) gives the same events and counts', () => {
    const counted = accountUpdateRecords(parseWebhookBody(body), receivedAt, 'd1', false);
    expect(counted.audit).toEqual([]);
    expect(counted.events).toEqual(sorted.events);
    expect([counted.auditCount, counted.unusable]).toEqual([sorted.audit.length, 1]);
    expect(counted.firstRefused).toEqual({ wabaId: sorted.audit[1]!.wabaId, key: sorted.audit[1]!._id });
  });

  it('gives the same documents from the raw body as the sink made at the ack, and prefers a stored audit', () => {
    expect(auditOfDelivery({ _id: 'd1', raw: raw.toString('base64'), receivedAt })).toEqual(sorted.audit);
    expect(
      auditOfDelivery({ _id: 'd1', raw: '', receivedAt, audit: JSON.stringify(sorted.audit.slice(0, 1)) }),
    ).toEqual(sorted.audit.slice(0, 1));
    expect(auditOfDelivery({ _id: 'd1', raw: '', receivedAt })).toEqual([]);
  });
});
