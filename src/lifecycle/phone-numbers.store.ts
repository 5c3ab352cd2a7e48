import { insertOnce, type Collections, type PhoneNumberDoc } from '../adapters/store/db';

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

/**
 * How many slots of a WABA's membership (`waba_numbers`) are read at once: first 2 (most WABAs have
 * one number or two: the read that finds the first free slot ends the list), then 8 at a time.
 */
const FIRST_SLOTS = 2;
const SLOTS_AT_ONCE = 8;

/** The slot of a WABA's membership list (`<wabaId>#<n>`). */
const slotId = (wabaId: string, n: number) => `${wabaId}#${n}`;

/** The phone ids in a WABA's membership slots, in slot order, and the first free slot (point reads). */
async function membership(c: Collections, wabaId: string): Promise<{ ids: string[]; free: number }> {
  const ids: string[] = [];
  for (let from = 0; ;) {
    const size = from === 0 ? FIRST_SLOTS : SLOTS_AT_ONCE;
    const docs = await Promise.all(
      Array.from({ length: size }, (_, i) => c.wabaNumbers.findOne({ _id: slotId(wabaId, from + i) })),
    );
    const gap = docs.findIndex((d) => d === null);
    for (const d of gap < 0 ? docs : docs.slice(0, gap)) ids.push(d!.phoneNumberId);
    if (gap >= 0) return { ids, free: from + gap };
    from += size;
  }
}

/**
 * Adds a number to its WABA's membership unless a slot has it: takes the first free slot by an
 * insert-only claim (a slot another registration took first moves it on to the next), so
 * concurrent registrations on any number of processes never lose one. True when it added a slot.
 */
async function addMember(c: Collections, wabaId: string, phoneNumberId: string): Promise<boolean> {
  const { ids, free } = await membership(c, wabaId);
  if (ids.includes(phoneNumberId)) return false;
  for (let n = free; !(await insertOnce(c.wabaNumbers, { _id: slotId(wabaId, n), wabaId, phoneNumberId })); n++) {
    if ((await c.wabaNumbers.findOne({ _id: slotId(wabaId, n) }))?.phoneNumberId === phoneNumberId) return false;
  }
  return true;
}

/**
 * A WABA's registered numbers, by id: its membership slots, each checked against the registry (a
 * number moved to another WABA is left out). Point reads only, so the cost does not grow with
 * the registry (the gate probe runs it for every waiting WABA).
 */
export async function numbersOfWaba(c: Collections, wabaId: string): Promise<PhoneNumberDoc[]> {
  const { ids } = await membership(c, wabaId);
  const docs = await Promise.all([...new Set(ids)].map((id) => c.phoneNumbers.findOne({ _id: id })));
  return docs
    .filter((d): d is PhoneNumberDoc => d !== null && d.wabaId === wabaId)
    .sort((a, b) => (a._id < b._id ? -1 : a._id > b._id ? 1 : 0));
}

/** True when some number of the WABA is registered. */
export async function wabaHasNumbers(c: Collections, wabaId: string): Promise<boolean> {
  return (await numbersOfWaba(c, wabaId)).length > 0;
}

/**
 * Registers or replaces a number; returns the stored document and whether it is new. The registry
 * document first, then the WABA's membership slot (a crash in between is repaired by registering
 * again, which operators do when a number is missing).
 */
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
  await addMember(c, fields.wabaId, phoneNumberId);
  return { doc, created: !existing };
}

/**
 * Registered numbers, by id, at most `limit`: of one WABA (`numbersOfWaba`, point reads), or all
 * of them (the ops listing; a scan of the registry on FerretDB).
 */
export async function listPhoneNumbers(
  c: Collections,
  wabaId: string | undefined,
  limit = 1000,
): Promise<PhoneNumberDoc[]> {
  if (wabaId !== undefined) return (await numbersOfWaba(c, wabaId)).slice(0, limit);
  return c.phoneNumbers.find({}).sort({ _id: 1 }).limit(limit).toArray();
}
