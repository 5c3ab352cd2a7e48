import { sendSchema } from '../../src/sending/api';
import { messageBody } from '../../src/adapters/graph/client';
import { isBsuid } from '../../src/contracts';

const base = { phoneNumberId: '106540352242922', type: 'text', text: { body: 'hi' } };
const BSUID = 'US.13491208655302741918';

describe('the send API names the customer by to or recipient (BSUID)', () => {
  it('takes a recipient BSUID instead of or beside to, and refuses neither', () => {
    expect(sendSchema.safeParse({ ...base, recipient: BSUID }).success).toBe(true);
    expect(sendSchema.safeParse({ ...base, recipient: 'US.ENT.11815799212886844830' }).success).toBe(true);
    expect(sendSchema.safeParse({ ...base, to: '15551234567', recipient: BSUID }).success).toBe(true);
    const neither = sendSchema.safeParse(base);
    expect(neither.success).toBe(false);
    expect(neither.error?.issues.map((i) => i.message)).toContain('to or recipient is required');
  });

  it.each(['13491208655302741918', 'us.1349', 'USA.1349', 'US.', 'US.12-34', `US.${'1'.repeat(129)}`])(
    'refuses %s as a recipient',
    (recipient) => {
      expect(sendSchema.safeParse({ ...base, recipient }).success).toBe(false);
    },
  );

  it('sends a BSUID as recipient and a phone number as to', () => {
    expect(isBsuid(BSUID)).toBe(true);
    expect(isBsuid('15551234567')).toBe(false);
    const content = { type: 'text', text: { body: 'hi' } } as const;
    const byBsuid = messageBody(BSUID, content);
    expect(byBsuid).toMatchObject({ recipient: BSUID });
    expect(byBsuid).not.toHaveProperty('to');
    const byPhone = messageBody('15551234567', content);
    expect(byPhone).toMatchObject({ to: '15551234567' });
    expect(byPhone).not.toHaveProperty('recipient');
  });
});
