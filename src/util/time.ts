/** Thrown by `withTimeout` when the deadline passes first. */
export class TimeoutError extends Error {
  override name = 'TimeoutError';
}

/**
 * Resolves or rejects as `promise` does, or rejects with a `TimeoutError` (message `what` timed
 * out after N ms) once `ms` pass first. The promise itself keeps running: callers whose work must
 * stop use a cancellation signal as well. `ms` ≤ 0 disables the deadline.
 */
export function withTimeout<T>(promise: Promise<T>, ms: number, what = 'operation'): Promise<T> {
  if (!(ms > 0)) return promise;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
