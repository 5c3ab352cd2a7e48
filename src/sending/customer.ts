import type { Collections } from '../adapters/store/db';
import { phoneOfBsuid } from './windows.store';

/**
 * Who a send addresses: the one key that order, the pair limit and the customer service window
 * use, whichever way the sender named the customer. `to` (a phone number) wins when given, as at
 * Meta; a BSUID alone becomes the phone number the service learnt for it from an inbound webhook
 * whose contact carried both (one point read), else stays the BSUID (sent to Meta as `recipient`).
 */
export async function customerOf(c: Collections, named: { to?: string; recipient?: string }): Promise<string> {
  if (named.to !== undefined) return named.to;
  if (named.recipient === undefined) throw new Error('a send names its customer by to or recipient');
  return (await phoneOfBsuid(c, named.recipient)) ?? named.recipient;
}
