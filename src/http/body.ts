import type { Context } from 'koa';
import { HttpError, badRequest, payloadTooLarge } from './errors';

/**
 * Reads the whole request body as bytes, refusing more than `limitBytes`: a `Content-Length` over
 * the cap is refused before anything is read; otherwise the stream is read until the cap is passed,
 * then reading stops (the stream is paused, the connection closed after the answer) and a 413
 * `payload_too_large` is thrown. An aborted or failed upload rejects with a 400 `request_aborted`
 * (no answer can reach the client then; it is not logged as unexpected). The body must not have
 * been consumed by an earlier middleware.
 */
export function readRawBody(ctx: Context, limitBytes: number): Promise<Buffer> {
  const tooLarge = () =>
    payloadTooLarge('payload_too_large', `request body is larger than ${limitBytes} bytes`, { limitBytes });
  const declared = ctx.get('content-length');
  if (declared !== '') {
    const n = Number(declared);
    if (Number.isFinite(n) && n > limitBytes) {
      ctx.req.pause();
      return Promise.reject(tooLarge());
    }
  }
  const req = ctx.req;
  if (req.readableEnded || req.destroyed) {
    return Promise.reject(new Error('request body already consumed or request destroyed'));
  }
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    let settled = false;
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
    };
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      cleanup();
      reject(err);
    };
    const aborted = (cause?: unknown) =>
      new HttpError(400, 'request_aborted', 'the request body was not received completely', { cause });
    function onData(chunk: Buffer) {
      if (settled) return;
      received += chunk.length;
      if (received > limitBytes) {
        req.pause();
        chunks.length = 0;
        fail(tooLarge());
        return;
      }
      chunks.push(chunk);
    }
    function onEnd() {
      if (settled) return;
      settled = true;
      cleanup();
      resolve(Buffer.concat(chunks, received));
    }
    function onError(err: Error) {
      fail(aborted(err));
    }
    function onClose() {
      // 'close' before 'end': the client went away mid-body.
      if (!req.complete) fail(aborted());
    }
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}

/** Decodes a request body as JSON; a body that is not JSON is a 400 `invalid_json`. */
export function parseJsonBody(raw: Buffer): unknown {
  try {
    return JSON.parse(raw.toString('utf8'));
  } catch {
    throw badRequest('invalid_json', 'the body is not valid JSON');
  }
}

/** Reads (with the byte cap of `readRawBody`) and decodes a JSON request body. */
export async function readJsonBody(ctx: Context, limitBytes: number): Promise<{ raw: Buffer; json: unknown }> {
  const raw = await readRawBody(ctx, limitBytes);
  return { raw, json: parseJsonBody(raw) };
}
