/**
 * `target` (a collection, against the real server) with one method replaced: `replacement` gets
 * the original, bound, and the call's arguments. For a store that is slow, fails once or is counted
 * for one operation; every other method is the real one.
 */
export function withMethod<T extends object>(
  target: T,
  method: keyof T & string,
  replacement: (original: (...args: unknown[]) => unknown, ...args: unknown[]) => unknown,
): T {
  return new Proxy(target, {
    get(t, prop, receiver) {
      if (prop !== method) return Reflect.get(t, prop, receiver) as unknown;
      const original = (Reflect.get(t, prop, receiver) as (...args: unknown[]) => unknown).bind(t);
      return (...args: unknown[]) => replacement(original, ...args);
    },
  });
}
