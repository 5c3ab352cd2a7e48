import type { Collections, PhoneNumberDoc } from './db';

/**
 * The phone-number registry (`phone_numbers`): which WABA a number belongs to and its throughput.
 * Operators write it through the ops API; every other reader goes through `createPhoneNumberLookup`.
 */

/**
 * The one lookup of a number: by id, with a short per-process cache of registered numbers (an
 * unregistered number is read again each time, so "register, then send" works at once). A cached
 * entry lives `ttlMs`, the longest a changed `mps` or WABA takes to be seen.
 */
export function createPhoneNumberLookup(c: Collections, ttlMs = 5_000) {
  const cache = new Map<string, { doc: PhoneNumberDoc; until: number }>();
  return async (phoneNumberId: string): Promise<PhoneNumberDoc | null> => {
    const hit = cache.get(phoneNumberId);
    if (hit && hit.until > Date.now()) return hit.doc;
    const doc = await c.phoneNumbers.findOne({ _id: phoneNumberId });
    if (doc) cache.set(phoneNumberId, { doc, until: Date.now() + ttlMs });
    else cache.delete(phoneNumberId);
    return doc;
  };
}

export type PhoneNumberLookup = ReturnType<typeof createPhoneNumberLookup>;

/** True when some number of the WABA is registered. */
export async function wabaHasNumbers(c: Collections, wabaId: string): Promise<boolean> {
  return (await c.phoneNumbers.findOne({ wabaId }, { projection: { _id: 1 } })) !== null;
}

/** Registers or replaces a number; returns the stored document and whether it is new. */
export async function registerPhoneNumber(
  c: Collections,
  phoneNumberId: string,
  fields: Pick<PhoneNumberDoc, 'wabaId' | 'mps' | 'coexistence'>,
  now: string,
): Promise<{ doc: PhoneNumberDoc; created: boolean }> {
  const existing = await c.phoneNumbers.findOne({ _id: phoneNumberId });
  const doc: PhoneNumberDoc = {
    _id: phoneNumberId,
    ...fields,
    createdAt: existing?.createdAt ?? now,
    updatedAt: now,
  };
  await c.phoneNumbers.replaceOne({ _id: phoneNumberId }, doc, { upsert: true });
  return { doc, created: !existing };
}

/** Registered numbers (of one WABA, when given), by id, at most `limit`. */
export function listPhoneNumbers(c: Collections, wabaId: string | undefined, limit = 1000): Promise<PhoneNumberDoc[]> {
  return c.phoneNumbers
    .find(wabaId ? { wabaId } : {})
    .sort({ _id: 1 })
    .limit(limit)
    .toArray();
}
