import {
  insertFacts,
  insertOnce,
  type Collections,
  type CustomerIdDoc,
  type CustomerWindowDoc,
} from '../adapters/store/db';

/**
 * Customer service windows (`customer_windows`, see `CustomerWindowDoc`): one document per
 * business number and customer, read by exact `_id` before a free-form send.
 */

/** The document's `_id`: the business number and the customer, as Meta names them (a phone number without its `+`). */
export const customerWindowId = (phoneNumberId: string, customer: string): string =>
  `${phoneNumberId}#${customer.replace(/^\+/, '')}`;

type WindowTime = 'lastInboundAt' | 'refusedAt';

/**
 * Raises one time of each named customer window to at least `at` (Unix s), creating the document
 * when absent. Per window: one `updateOne` with `$max` (one write statement) when the document
 * exists; the first time, that update matches nothing and an insert follows (two); a lost insert
 * race (a duplicate key) is followed by the update again. No upsert: on FerretDB an upsert is a
 * read then a write, so two could both insert.
 *
 * `$max` never lowers a stored time, on MongoDB atomically. On FerretDB an update is a read and a
 * write in separate steps: two updates of one window at the same moment (two messages of one
 * customer acknowledged concurrently) can leave the earlier of their times, seconds older than
 * the truth; the window's decision allows a margin for it (src/sending/window.ts).
 */
export async function raiseWindowTimes(
  c: Collections,
  field: WindowTime,
  times: readonly { id: string; at: number }[],
): Promise<void> {
  const newest = new Map<string, number>();
  for (const { id, at } of times) newest.set(id, Math.max(at, newest.get(id) ?? 0));
  await Promise.all(
    [...newest].map(async ([id, at]) => {
      const raise = () => c.customerWindows.updateOne({ _id: id }, { $max: { [field]: at } });
      if ((await raise()).matchedCount > 0) return;
      const doc: CustomerWindowDoc = { _id: id, [field]: at };
      if (!(await insertOnce(c.customerWindows, doc))) await raise();
    }),
  );
}

/** The window's document, or null when the service has seen nothing of this customer (a point read by `_id`). */
export function readCustomerWindow(
  c: Collections,
  phoneNumberId: string,
  customer: string,
): Promise<CustomerWindowDoc | null> {
  return c.customerWindows.findOne({ _id: customerWindowId(phoneNumberId, customer) });
}

/** Records BSUID → phone pairs (insert-only facts, one grouped insert; a known BSUID keeps its number). */
export function recordCustomerIds(c: Collections, pairs: readonly CustomerIdDoc[]): Promise<void> {
  return insertFacts(c.customerIds, pairs);
}

/** The phone number known for a BSUID, or undefined (a point read by `_id`). */
export async function phoneOfBsuid(c: Collections, bsuid: string): Promise<string | undefined> {
  return (await c.customerIds.findOne({ _id: bsuid }))?.phone;
}
