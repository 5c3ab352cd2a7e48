import type { AlertThreadDoc, Collections } from '../adapters/store/db';

/** The Slack thread of the WABA's open incident, if any. */
export async function openThreadOf(c: Collections, wabaId: string): Promise<AlertThreadDoc | null> {
  const doc = await c.alertThreads.findOne({ _id: wabaId });
  return doc?.open ? doc : null;
}

/** Records the thread a new incident's first message started (replaces a closed one). */
export async function saveThread(c: Collections, doc: AlertThreadDoc): Promise<void> {
  await c.alertThreads.replaceOne({ _id: doc._id }, doc, { upsert: true });
}

/** Marks the WABA's incident thread closed: the next alert starts a new thread. */
export async function closeThread(c: Collections, wabaId: string): Promise<void> {
  await c.alertThreads.updateOne({ _id: wabaId }, { $set: { open: false } });
}
