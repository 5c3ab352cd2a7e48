import type { Middleware } from 'koa';
import { matchIndex, secretDigest } from '../util/compare';
import { unauthorized } from './errors';

/**
 * Requires `Authorization: Bearer <key>` with one of `keys` (compared in constant time). Puts a
 * short, non-secret fingerprint of the key in `ctx.state.apiKeyId` (idempotency keys and rate limits
 * are scoped by it) and the key's position in `keys` in `ctx.state.apiKeyIndex` (its WABA scope).
 */
export function bearerAuth(keys: readonly string[], realm: string): Middleware {
  const digests = keys.map(secretDigest);
  return async function requireApiKey(ctx, next) {
    const header = ctx.get('authorization');
    const match = /^Bearer\s+(.+)$/i.exec(header);
    if (!match) throw unauthorized('missing_api_key', `${realm} requires Authorization: Bearer <key>`);
    const given = secretDigest(match[1]!.trim());
    const index = matchIndex(given, digests);
    if (index < 0) throw unauthorized('invalid_api_key', `the API key is not valid for the ${realm}`);
    ctx.state.apiKeyId = given.subarray(0, 6).toString('hex');
    ctx.state.apiKeyIndex = index;
    await next();
  };
}
