import { insertOnce, type Collections, type CredentialPauseDoc } from '../adapters/store/db';

/** Records a token's pause; false when it was already paused (the same pause: nothing changes). */
export function pauseToken(c: Collections, doc: CredentialPauseDoc): Promise<boolean> {
  return insertOnce(c.credentialPauses, doc);
}

/** The token's pause, or null (a point read by `_id`). */
export function readTokenPause(c: Collections, source: string): Promise<CredentialPauseDoc | null> {
  return c.credentialPauses.findOne({ _id: source });
}

/**
 * The pause's last evidence: a probe that Meta still refused (the credentials workflow) or a new
 * refusal (a sender). A blind `$set` of `checkedAt`; nothing is read first.
 */
export async function markTokenChecked(c: Collections, source: string, at: string): Promise<void> {
  await c.credentialPauses.updateOne({ _id: source }, { $set: { checkedAt: at } });
}

/** Lifts the pause (the token works again). */
export async function liftTokenPause(c: Collections, source: string): Promise<void> {
  await c.credentialPauses.deleteOne({ _id: source });
}

/** Every token pause (one per refused token: a handful at most), for metrics. */
export function listTokenPauses(c: Collections): Promise<CredentialPauseDoc[]> {
  return c.credentialPauses.find({}).limit(100).toArray();
}
