import { Webhook } from 'standardwebhooks';

/**
 * Outbound signatures, as the ecosystem expects them: Standard Webhooks (`webhook-id`,
 * `webhook-timestamp`, `webhook-signature`), computed with the `standardwebhooks` library. A target
 * may list several secrets during a rotation: the request then carries one `v1,<sig>` per secret
 * (space-separated), and a receiver that knows any of them verifies it.
 */

/** The Standard Webhooks headers of one request. */
export interface SignedHeaders {
  'webhook-id': string;
  'webhook-timestamp': string;
  'webhook-signature': string;
}

/** Signs `body` (the exact bytes sent) with every secret (`whsec_…` base64 secrets). */
export function signRequest(secrets: readonly string[], id: string, at: Date, body: string | Buffer): SignedHeaders {
  if (secrets.length === 0) throw new Error('signRequest needs at least one secret');
  const signature = secrets.map((s) => new Webhook(s).sign(id, at, body)).join(' ');
  return {
    'webhook-id': id,
    'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
    'webhook-signature': signature,
  };
}

/** True when `secret` looks like a Standard Webhooks secret (`whsec_` + base64 of ≥ 24 bytes). */
export function isSigningSecret(secret: string): boolean {
  const m = /^whsec_([A-Za-z0-9+/=]+)$/.exec(secret);
  return m !== null && Buffer.from(m[1]!, 'base64').length >= 24;
}
