import type { Context, Middleware } from 'koa';
import type { Logger } from 'pino';
import { HttpError, requestIdOf } from './errors';

/**
 * Load shedding: at most `max` requests that `applies` to are handled at once. One more is answered
 * at once (never queued, never left hanging) with `status` (503 for Meta's webhook, which
 * redelivers; 429 for the send and ops API) and `Retry-After`, before its body is read; the
 * connection is closed after the answer so an unread body is not drained.
 */
export interface InFlightLimitOptions {
  /** Short name for logs and the error message (`webhook`, `api`). */
  name: string;
  max: number;
  /** Which requests count against this limit. */
  applies: (ctx: Context) => boolean;
  status: 429 | 503;
  /** `Retry-After` in seconds. Default 1. */
  retryAfterSeconds?: number;
  logger: Logger;
  /** Called once per shed request (metrics). */
  onShed?: () => void;
}

/** Shed requests are logged at most this often (a flood must not flood the log). */
const SHED_LOG_INTERVAL_MS = 5_000;

/** The limit as a middleware; mount right after `errorMiddleware()`. `inFlight()` reads the count. */
export function inFlightLimit(options: InFlightLimitOptions): Middleware & { inFlight(): number } {
  const { name, max, applies, status, logger, onShed } = options;
  if (!Number.isInteger(max) || max < 1) throw new Error(`inFlightLimit(${name}): max must be a positive integer`);
  const retryAfter = String(options.retryAfterSeconds ?? 1);
  let inFlight = 0;
  let shedSinceLog = 0;
  let lastLog = 0;
  const middleware = async function inFlightLimiter(ctx: Context, next: () => Promise<unknown>): Promise<void> {
    if (!applies(ctx)) return void (await next());
    if (inFlight >= max) {
      onShed?.();
      shedSinceLog++;
      const now = Date.now();
      if (now - lastLog >= SHED_LOG_INTERVAL_MS) {
        logger.warn(
          { limit: name, max, shed: shedSinceLog, requestId: requestIdOf(ctx) },
          'shedding load: too many requests in flight',
        );
        lastLog = now;
        shedSinceLog = 0;
      }
      throw new HttpError(
        status,
        status === 429 ? 'too_many_requests' : 'overloaded',
        `too many ${name} requests in flight; retry later`,
        {
          expose: true,
          headers: { 'Retry-After': retryAfter, Connection: 'close' },
        },
      );
    }
    inFlight++;
    try {
      await next();
    } finally {
      inFlight--;
    }
  };
  return Object.assign(middleware, { inFlight: () => inFlight });
}
