import type { Context, Middleware } from 'koa';
import { HttpError } from './errors';

/**
 * Rate limit per API key: a token bucket per key (`ctx.state.apiKeyId`, set by `bearerAuth`), in
 * this process. It protects the process (each server enforces its own budget), not a global quota.
 * Past the budget a request is answered 429 `rate_limited` with `Retry-After` (whole seconds until
 * a token is back) before its body is read. Mount after `bearerAuth`, so only valid keys get a bucket.
 */
export interface KeyRateLimitOptions {
  /** Tokens added per second (the sustained rate); 0 turns the limit off. */
  ratePerSec: number;
  /** Bucket size (the burst a key may spend at once). */
  burst: number;
  /** Called once per refused request (metrics). */
  onLimited?: (keyId: string) => void;
  now?: () => number;
}

interface Bucket {
  tokens: number;
  at: number;
}

/** One limiter per app, shared by the routers that mount its middleware (a key has one budget). */
export function createKeyRateLimit(options: KeyRateLimitOptions): Middleware {
  const { ratePerSec, burst, onLimited } = options;
  const now = options.now ?? Date.now;
  const buckets = new Map<string, Bucket>();
  return async function keyRateLimit(ctx: Context, next: () => Promise<unknown>): Promise<void> {
    if (ratePerSec <= 0) return void (await next());
    const keyId = String(ctx.state.apiKeyId);
    const t = now();
    const b = buckets.get(keyId) ?? { tokens: burst, at: t };
    b.tokens = Math.min(burst, b.tokens + ((t - b.at) / 1000) * ratePerSec);
    b.at = t;
    buckets.set(keyId, b);
    if (b.tokens < 1) {
      onLimited?.(keyId);
      const retryAfter = Math.max(1, Math.ceil((1 - b.tokens) / ratePerSec));
      throw new HttpError(429, 'rate_limited', `this API key is over its rate limit; retry in ${retryAfter} s`, {
        expose: true,
        headers: { 'Retry-After': String(retryAfter) },
      });
    }
    b.tokens -= 1;
    await next();
  };
}
