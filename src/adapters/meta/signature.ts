import { createHmac } from 'node:crypto';
import { matchIndex } from '../../util/compare';

/** The header Meta signs every webhook POST with. */
export const SIGNATURE_HEADER = 'x-hub-signature-256';

/**
 * Signs a webhook body the way Meta does: `sha256=` + hex HMAC-SHA256 of the exact bytes, keyed
 * by the app secret. Used by the Meta simulator and the tests.
 */
export function signBody(body: Buffer | string, appSecret: string): string {
  return 'sha256=' + createHmac('sha256', appSecret).update(body).digest('hex');
}

/**
 * True when `header` is a valid signature of `body` under any of `secrets` (several secrets are
 * accepted at once so the app secret can be rotated). Compares in constant time; a malformed or
 * missing header is simply invalid.
 */
export function verifySignature(body: Buffer, header: string | undefined, secrets: readonly string[]): boolean {
  if (!header || !header.startsWith('sha256=')) return false;
  const given = Buffer.from(header.slice('sha256='.length), 'hex');
  if (given.length !== 32) return false;
  // Every secret is checked whatever the outcome (no early exit).
  return (
    matchIndex(
      given,
      secrets.map((secret) => createHmac('sha256', secret).update(body).digest()),
    ) >= 0
  );
}
