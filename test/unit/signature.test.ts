import { signBody, verifySignature } from '../../src/adapters/meta/signature';

describe('webhook signature', () => {
  const body = Buffer.from('{"object":"whatsapp_business_account","entry":[]}');

  it('accepts the signature Meta would send under the current secret', () => {
    expect(verifySignature(body, signBody(body, 's1'), ['s1'])).toBe(true);
  });

  it('accepts a signature under any of several secrets (rotation)', () => {
    expect(verifySignature(body, signBody(body, 'old'), ['new', 'old'])).toBe(true);
  });

  it('rejects a wrong secret, a changed body, a missing or malformed header', () => {
    expect(verifySignature(body, signBody(body, 'other'), ['s1'])).toBe(false);
    expect(verifySignature(Buffer.from(body.toString() + ' '), signBody(body, 's1'), ['s1'])).toBe(false);
    expect(verifySignature(body, undefined, ['s1'])).toBe(false);
    expect(verifySignature(body, 'sha1=abc', ['s1'])).toBe(false);
    expect(verifySignature(body, 'sha256=zz', ['s1'])).toBe(false);
  });
});
