/**
 * A tiny concurrency limiter: at most `max` of the functions given to `run` are in flight at once;
 * the others wait in arrival order. A rejection frees the slot like a resolution does.
 */
export interface Limiter {
  run<T>(fn: () => Promise<T>): Promise<T>;
  /** Functions running now. */
  readonly active: number;
  /** Functions waiting for a slot. */
  readonly pending: number;
}

export function createLimiter(max: number): Limiter {
  if (!Number.isInteger(max) || max < 1) throw new Error(`createLimiter: max must be a positive integer, got ${max}`);
  let active = 0;
  const waiting: (() => void)[] = [];
  // A freed slot passes straight to the next waiter (`active` unchanged), so a caller arriving in
  // between cannot take it too.
  const release = () => {
    const next = waiting.shift();
    if (next) next();
    else active--;
  };
  return {
    async run<T>(fn: () => Promise<T>): Promise<T> {
      if (active >= max) await new Promise<void>((resolve) => waiting.push(resolve));
      else active++;
      try {
        return await fn();
      } finally {
        release();
      }
    },
    get active() {
      return active;
    },
    get pending() {
      return waiting.length;
    },
  };
}

/** `Promise.all(items.map(fn))` with at most `max` calls of `fn` in flight. */
export function mapLimit<T, R>(items: readonly T[], max: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const limiter = createLimiter(max);
  return Promise.all(items.map((item) => limiter.run(() => fn(item))));
}
