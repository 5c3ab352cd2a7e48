import { readPhoneHealth } from '../../src/adapters/graph/phone-health';
import { DEFAULT_NUMBER_CONFIG, phoneNumberNode } from '../../tools/meta-sim/server';

/** The probe's reading of Meta's phone-number node, against the simulator's rendering of it. */
describe('readPhoneHealth', () => {
  const fields = ['health_status', 'status', 'platform_type'] as const;

  it('a normal number is usable: AVAILABLE, CONNECTED, CLOUD_API', () => {
    const h = readPhoneHealth(phoneNumberNode('2001', { ...DEFAULT_NUMBER_CONFIG }, fields));
    expect(h).toMatchObject({ id: '2001', usable: true, canSendMessage: 'AVAILABLE', status: 'CONNECTED' });
    expect(h?.summary).toBe('can_send_message AVAILABLE, status CONNECTED, platform CLOUD_API');
  });

  it('an offboarded number is not usable, and the blocking error code is read', () => {
    const h = readPhoneHealth(phoneNumberNode('2001', { ...DEFAULT_NUMBER_CONFIG, mode: 'offboarded' }, fields));
    expect(h).toMatchObject({ usable: false, canSendMessage: 'BLOCKED', status: 'DISCONNECTED' });
    expect(h?.errorCodes).toEqual([DEFAULT_NUMBER_CONFIG.offboardedError.code]);
  });

  it('LIMITED can still send', () => {
    const h = readPhoneHealth(phoneNumberNode('2001', { ...DEFAULT_NUMBER_CONFIG, limitedInfo: ['tier'] }, fields));
    expect(h).toMatchObject({ usable: true, canSendMessage: 'LIMITED' });
  });

  it('an answer without any of the fields is not evidence of usability; one without id is not a node', () => {
    expect(readPhoneHealth({ id: '2001' })?.usable).toBe(false);
    expect(readPhoneHealth({ status: 'CONNECTED' })).toBeUndefined();
  });
});
