import { createHash, timingSafeEqual } from 'node:crypto';

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/** Constant-time equality of two strings (lengths are hidden by hashing both first). */
export function safeEqual(a: string, b: string): boolean {
  return timingSafeEqual(digest(a), digest(b));
}

/**
 * Index of the first of `candidates` equal to `given` (all of equal length), or -1. Every
 * candidate is compared, in constant time, whatever the outcome: no early exit leaks which one
 * matched or how many were tried.
 */
export function matchIndex(given: Buffer, candidates: readonly Buffer[]): number {
  let found = -1;
  candidates.forEach((c, i) => {
    if (c.length === given.length && timingSafeEqual(given, c) && found < 0) found = i;
  });
  return found;
}

/** SHA-256 of a secret, for comparing with `matchIndex` (equal lengths) and as a fingerprint. */
export const secretDigest = digest;
