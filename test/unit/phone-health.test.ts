import { PROBE_FIELDS, readPhoneHealth } from '../../src/adapters/graph/phone-health';
import { DEFAULT_NUMBER_CONFIG, phoneNumberNode, type PhoneNumberField } from '../../tools/meta-sim/server';

/** The probe's reading of Meta's phone-number node, against the simulator's rendering of it. */
describe('readPhoneHealth', () => {
  const fields = PROBE_FIELDS.split(',') as PhoneNumberField[];
  const node = (config: Partial<typeof DEFAULT_NUMBER_CONFIG>) =>
    phoneNumberNode('2001', { ...DEFAULT_NUMBER_CONFIG, ...config }, fields);

  it('a normal coexistence number is usable: AVAILABLE, CONNECTED, CLOUD_API, still on the Business app', () => {
    const h = readPhoneHealth(node({}));
    expect(h).toMatchObject({ id: '2001', usable: true, canSendMessage: 'AVAILABLE', status: 'CONNECTED' });
    expect(h).toMatchObject({ isOnBizApp: true, otherEntities: [] });
    expect(h?.summary).toBe('can_send_message AVAILABLE, status CONNECTED, platform CLOUD_API, is_on_biz_app true');
  });

  it('an offboarded number is not usable, and the blocking error code is read', () => {
    const h = readPhoneHealth(node({ mode: 'offboarded' }));
    expect(h).toMatchObject({ usable: false, canSendMessage: 'BLOCKED', status: 'DISCONNECTED' });
    expect(h?.errorCodes).toEqual([DEFAULT_NUMBER_CONFIG.offboardedError.code]);
  });

  it('LIMITED can still send', () => {
    const h = readPhoneHealth(node({ limitedInfo: ['tier'] }));
    expect(h).toMatchObject({ usable: true, canSendMessage: 'LIMITED' });
  });

  it('an app calling error (138024) makes the aggregate BLOCKED: the number is usable, and the app error is in the summary', () => {
    const h = readPhoneHealth(node({ appCallingErrors: [138024, 138025] }));
    expect(h).toMatchObject({
      usable: true,
      canSendMessage: 'AVAILABLE',
      overallCanSendMessage: 'BLOCKED',
      errorCodes: [],
      otherEntities: [
        { type: 'APP', id: DEFAULT_NUMBER_CONFIG.appId, canSendMessage: 'BLOCKED', errorCodes: [138024, 138025] },
      ],
    });
    expect(h?.summary).toBe(
      'can_send_message AVAILABLE (overall BLOCKED), status CONNECTED, platform CLOUD_API, is_on_biz_app true; ' +
        `not held against it: APP ${DEFAULT_NUMBER_CONFIG.appId} BLOCKED (138024, 138025)`,
    );
  });

  it('an offboarded number with an app calling error is judged by its own entity: unusable, with both errors told apart', () => {
    const h = readPhoneHealth(node({ mode: 'offboarded', appCallingErrors: [138024] }));
    expect(h).toMatchObject({ usable: false, canSendMessage: 'BLOCKED', errorCodes: [133010] });
    expect(h?.otherEntities).toEqual([expect.objectContaining({ type: 'APP', errorCodes: [138024] })]);
  });

  it.each([
    ['DISCONNECTED status', { status: 'DISCONNECTED' }],
    ['the number not on the Cloud API', { platform_type: 'NOT_APPLICABLE' }],
  ])('an AVAILABLE number entity is still unusable with %s', (_, field) => {
    const answer = { ...node({}), ...field };
    expect(readPhoneHealth(answer)?.usable).toBe(false);
  });

  it.each([true, false])('is_on_biz_app %s is recorded, never held against the number', (isOnBizApp) => {
    const h = readPhoneHealth(node({ isOnBizApp }));
    expect(h).toMatchObject({ usable: true, isOnBizApp });
  });

  it('the number entity is matched by id: another PHONE_NUMBER entity blocked does not count against it', () => {
    const health = {
      can_send_message: 'BLOCKED',
      entities: [
        { entity_type: 'PHONE_NUMBER', id: '9999', can_send_message: 'BLOCKED', errors: [{ error_code: 131031 }] },
        { entity_type: 'PHONE_NUMBER', id: '2001', can_send_message: 'AVAILABLE' },
      ],
    };
    const h = readPhoneHealth({ id: '2001', status: 'CONNECTED', health_status: health });
    expect(h).toMatchObject({ usable: true, errorCodes: [], otherEntities: [{ id: '9999', errorCodes: [131031] }] });
  });

  it('without an entities list (or without a PHONE_NUMBER entity in it) the aggregate decides', () => {
    const bare = readPhoneHealth({ id: '2001', status: 'CONNECTED', health_status: { can_send_message: 'BLOCKED' } });
    expect(bare).toMatchObject({ usable: false, canSendMessage: 'BLOCKED' });
    expect(bare?.summary).toBe('can_send_message BLOCKED, status CONNECTED, platform ?');
    const noNumber = readPhoneHealth({
      id: '2001',
      health_status: {
        can_send_message: 'BLOCKED',
        entities: [{ entity_type: 'APP', id: '7', can_send_message: 'BLOCKED', errors: [{ error_code: 138024 }] }],
      },
    });
    expect(noNumber).toMatchObject({ usable: false, canSendMessage: 'BLOCKED', errorCodes: [138024] });
    expect(noNumber?.summary).toMatch(/^can_send_message BLOCKED \(overall: no PHONE_NUMBER entity\)/);
    const limited = readPhoneHealth({ id: '2001', health_status: { can_send_message: 'LIMITED' } });
    expect(limited?.usable).toBe(true);
  });

  it('an answer without any of the fields is not evidence of usability; one without id is not a node', () => {
    expect(readPhoneHealth({ id: '2001' })?.usable).toBe(false);
    expect(readPhoneHealth({ id: '2001', is_on_biz_app: true })?.usable).toBe(false);
    expect(readPhoneHealth({ status: 'CONNECTED' })).toBeUndefined();
  });
});
