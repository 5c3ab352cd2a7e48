import { randomUUID } from 'node:crypto';
import type { Context, Middleware } from 'koa';
import type { Logger } from 'pino';
import type { z } from 'zod';

/**
 * The HTTP error model. Handlers throw `HttpError` (through the helpers below) for every answer
 * that is not a success; `errorMiddleware`, first in the chain, renders all of them as
 * `{ error: { code, message, details } }`. Anything else thrown is a bug or an outage: it becomes
 * a 500 `internal` answer and is logged once, with the request id. Stack traces never reach clients.
 */

/** Thrown by handlers to answer with `status`. `code` is a stable snake_case string clients may
 *  branch on; `message` is for humans; `details` must be safe to show. When `expose` is false the
 *  answer carries a generic message and no details. */
export class HttpError extends Error {
  override name = 'HttpError';
  readonly status: number;
  readonly code: string;
  readonly expose: boolean;
  readonly details?: unknown;
  /** Response headers to set with the error answer (e.g. `Connection: close` on a 413). */
  readonly headers?: Record<string, string>;

  constructor(
    status: number,
    code: string,
    message: string,
    options: { details?: unknown; expose?: boolean; headers?: Record<string, string>; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.status = status;
    this.code = code;
    this.expose = options.expose ?? status < 500;
    if (options.details !== undefined) this.details = options.details;
    if (options.headers !== undefined) this.headers = options.headers;
  }
}

/** 400: the request is malformed (bad JSON, wrong shape, missing parameter). */
export const badRequest = (code: string, message: string, details?: unknown): HttpError =>
  new HttpError(400, code, message, { details });
/** 401: no or wrong credentials (API key, webhook signature). */
export const unauthorized = (code: string, message: string, details?: unknown): HttpError =>
  new HttpError(401, code, message, { details });
/** 403: credentials are fine but not for this (or a verification token mismatch). */
export const forbidden = (code: string, message: string, details?: unknown): HttpError =>
  new HttpError(403, code, message, { details });
/** 404: the addressed thing does not exist. */
export const notFound = (code: string, message: string, details?: unknown): HttpError =>
  new HttpError(404, code, message, { details });
/** 409: the request conflicts with the current state (duplicate id, refused operator action). */
export const conflict = (code: string, message: string, details?: unknown): HttpError =>
  new HttpError(409, code, message, { details });
/** 422: well-formed but semantically unacceptable. */
export const unprocessable = (code: string, message: string, details?: unknown): HttpError =>
  new HttpError(422, code, message, { details });
/** 413: the body is over the cap. The connection is closed after the answer so the rest of a
 *  large body is not read. */
export const payloadTooLarge = (code: string, message: string, details?: unknown): HttpError =>
  new HttpError(413, code, message, { details, headers: { Connection: 'close' } });
/** 503: a dependency is down; the caller should retry. Exposed (the message is written for clients). */
export const unavailable = (code: string, message: string, details?: unknown): HttpError =>
  new HttpError(503, code, message, { details, expose: true });

/**
 * Validates request input with a zod schema: the parsed value, or a 400 `code` whose details list
 * each issue as `{ path, message }`. For input only; a failed parse of our own data is a 500.
 */
export function parseInput<S extends z.ZodType>(schema: S, input: unknown, code = 'invalid_request'): z.output<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const issues = result.error.issues.map((i) => ({ path: i.path.map(String).join('.'), message: i.message }));
  throw badRequest(code, issues[0] ? `${issues[0].path || 'input'}: ${issues[0].message}` : 'invalid input', {
    issues,
  });
}

const DEFAULT_CODES: Record<number, string> = {
  400: 'bad_request',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  405: 'method_not_allowed',
  406: 'not_acceptable',
  408: 'request_timeout',
  409: 'conflict',
  411: 'length_required',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  422: 'unprocessable',
  429: 'too_many_requests',
  501: 'not_implemented',
  502: 'bad_gateway',
  503: 'unavailable',
  504: 'gateway_timeout',
};
const DEFAULT_MESSAGES: Record<number, string> = {
  404: 'not found',
  405: 'method not allowed',
  501: 'not implemented',
  503: 'service unavailable',
};

const defaultCode = (status: number): string => DEFAULT_CODES[status] ?? (status >= 500 ? 'internal' : 'bad_request');

/** An error from `ctx.throw` / `ctx.assert` / http-errors: a client status and an `expose` flag. */
function isStatusError(err: unknown): err is Error & { status: number; expose?: boolean } {
  if (!(err instanceof Error)) return false;
  const status: unknown = (err as Error & { status?: unknown }).status;
  return typeof status === 'number' && status >= 400 && status <= 599;
}

const REQUEST_ID_RE = /^[\w.:-]{1,128}$/;

/** The request id of `ctx`: set by `errorMiddleware` (from a sane `X-Request-Id` header, or a new UUID). */
export function requestIdOf(ctx: Context): string | undefined {
  const id: unknown = (ctx.state as { requestId?: unknown }).requestId;
  return typeof id === 'string' ? id : undefined;
}

function render(ctx: Context, status: number, code: string, message: string, details?: unknown): void {
  ctx.status = status;
  ctx.body = { error: details === undefined ? { code, message } : { code, message, details } };
}

export interface ErrorMiddlewareOptions {
  /** Where unexpected errors are logged (once, at error level, with the request id). Without it
   *  they are emitted as `app.emit('error', err, ctx)`, Koa's default. */
  logger?: Logger;
}

/**
 * First middleware of the app. Gives each request an id (`ctx.state.requestId`, echoed in the
 * `X-Request-Id` response header), renders every `HttpError` and http-errors-style error
 * (`ctx.throw`) as `{ error: { code, message, details } }`, turns a response left without a body
 * at 4xx/5xx (unmatched route, 405 from `allowedMethods`) into the same shape, and answers anything
 * else with 500 `internal` after logging it. Deliberate `HttpError`s are not logged here: the
 * thrower logs with its own context when it matters.
 */
export function errorMiddleware(options: ErrorMiddlewareOptions = {}): Middleware {
  const { logger } = options;
  return async function errorHandler(ctx, next) {
    const incoming = ctx.get('x-request-id');
    const requestId = requestIdOf(ctx) ?? (REQUEST_ID_RE.test(incoming) ? incoming : randomUUID());
    ctx.state.requestId = requestId;
    ctx.set('X-Request-Id', requestId);
    try {
      await next();
      if ((ctx.body === null || ctx.body === undefined) && ctx.status >= 400) {
        render(ctx, ctx.status, defaultCode(ctx.status), DEFAULT_MESSAGES[ctx.status] ?? 'request failed');
      }
    } catch (err: unknown) {
      if (err instanceof HttpError) {
        if (!ctx.headerSent && ctx.writable) {
          if (err.headers) ctx.set(err.headers);
          if (err.expose) render(ctx, err.status, err.code, err.message, err.details);
          else render(ctx, err.status, err.code, err.status >= 500 ? 'internal error' : 'request failed');
        }
        return;
      }
      if (isStatusError(err) && err.status < 500) {
        if (!ctx.headerSent && ctx.writable) {
          const message = err.expose === false ? 'request failed' : err.message;
          render(ctx, err.status, defaultCode(err.status), message);
        }
        return;
      }
      // Unexpected: a bug, an outage, or a 5xx from ctx.throw. Logged once, never shown.
      if (logger) {
        logger.error({ err, requestId, method: ctx.method, path: ctx.path }, 'unexpected error while handling request');
      } else {
        ctx.app.emit('error', err, ctx);
      }
      if (!ctx.headerSent && ctx.writable) {
        render(ctx, 500, 'internal', 'internal error');
      }
    }
  };
}

const CLIENT_GONE_CODES = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'ERR_STREAM_PREMATURE_CLOSE']);

/** True for errors that only say the client went away or sent a broken request (not our fault). */
function isClientGone(err: unknown): boolean {
  const code: unknown = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (CLIENT_GONE_CODES.has(code) || code.startsWith('HPE_'));
}

/**
 * Listener for `app.on('error', …)`. With `errorMiddleware({ logger })` in place, Koa only emits
 * errors raised outside the middleware chain: a response stream failing, or a socket failing after
 * the answer (client disconnects, malformed trailing bytes). Client disconnects are logged at
 * debug; anything else at error with the request id. Registering it also stops Koa's default
 * `console.error` output.
 */
export function appErrorListener(logger: Logger): (err: unknown, ctx?: Context) => void {
  return (err, ctx) => {
    const requestId = ctx ? requestIdOf(ctx) : undefined;
    if (isClientGone(err)) logger.debug({ err, requestId }, 'client connection ended abnormally');
    else
      logger.error({ err, requestId, method: ctx?.method, path: ctx?.path }, 'unexpected error outside the handlers');
  };
}
