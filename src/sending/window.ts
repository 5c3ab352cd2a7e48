import type { CustomerWindowDoc, Collections } from '../adapters/store/db';
import type { InboundMessage } from '../adapters/meta/webhook-payload';
import { customerWindowId, raiseWindowTimes, readCustomerWindow } from './windows.store';
import type { MessageContent, TemplateBody } from '../contracts';

/**
 * The customer service window: the one owner of "may this free-form message leave, or does its
 * fallback template go instead, or neither?". Asked by `sendWithLedger` (src/sending/ledger.ts)
 * right before the POST, so by the direct send and the drain alike.
 *
 * Meta lets a free-form (non-template) message through only within 24 h of the customer's last
 * message to the business number, and answers 131047 otherwise; templates always go. The service
 * sees every inbound `messages` webhook (`recordInbound`) and every 131047 (`learnWindowClosed`),
 * and holds a message back only when it knows the window is closed. When it has seen nothing of the
 * customer it does not guess: the message goes and Meta decides.
 */

/** Meta's customer service window. */
export const SERVICE_WINDOW_MS = 24 * 60 * 60 * 1000;

/**
 * How long past the 24 h the service still lets a message go: Meta's timestamps and this clock
 * differ a little, and a concurrent update on FerretDB may keep an inbound time seconds early
 * (src/sending/windows.store.ts). A message sent in that minute meets Meta's own judgement, which
 * ends the same way (131047).
 */
export const WINDOW_CLOSE_MARGIN_MS = 60_000;

/** What the service knows of a customer's window: `unknown` when it has seen no message from them. */
export type WindowState = 'open' | 'closed' | 'unknown';

/** The window's state from its record, at `nowMs` (pure). Meta's 131047 holds until a newer inbound message. */
export function windowState(doc: CustomerWindowDoc | null, nowMs: number): WindowState {
  const last = doc?.lastInboundAt;
  const refused = doc?.refusedAt;
  if (refused !== undefined && (last === undefined || refused > last)) return 'closed';
  if (last === undefined) return 'unknown';
  return nowMs - last * 1000 > SERVICE_WINDOW_MS + WINDOW_CLOSE_MARGIN_MS ? 'closed' : 'open';
}

/** What leaves for a message: its content, its fallback template instead, or nothing (`closed`). */
export type WindowDecision = { kind: 'send'; content: MessageContent; fallback: boolean } | { kind: 'closed' };

/** Decides what leaves, given the window's state (pure). Templates are never held back. */
export function decideForWindow(
  content: MessageContent,
  fallbackTemplate: TemplateBody | undefined,
  state: WindowState,
): WindowDecision {
  if (content.type === 'template' || state !== 'closed') return { kind: 'send', content, fallback: false };
  if (fallbackTemplate)
    return { kind: 'send', content: { type: 'template', template: fallbackTemplate }, fallback: true };
  return { kind: 'closed' };
}

/** The customer a send addresses, on a number. */
export interface WindowKey {
  phoneNumberId: string;
  to: string;
}

/**
 * The window's state for a message about to leave: one point read by `_id` for a free-form
 * message, none for a template (it goes whatever the window).
 */
export async function readWindowState(
  c: Collections,
  key: WindowKey,
  content: MessageContent,
  nowMs = Date.now(),
): Promise<WindowState> {
  if (content.type === 'template') return 'unknown';
  return windowState(await readCustomerWindow(c, key.phoneNumberId, key.to), nowMs);
}

/**
 * Records the customers' inbound messages (the webhook sink, before the 200): one `$max` update per
 * distinct customer and number (two writes the first time; see `raiseWindowTimes`).
 */
export function recordInbound(c: Collections, inbound: readonly InboundMessage[]): Promise<void> {
  return raiseWindowTimes(
    c,
    'lastInboundAt',
    inbound.map((m) => ({ id: customerWindowId(m.phoneNumberId, m.from), at: m.timestamp })),
  );
}

/**
 * Meta answered 131047: the window is closed until the customer writes again. Meta's word is
 * recorded as newer than every inbound message known now (a timestamp ahead of this clock must
 * not reopen it, or a message with a fallback template would be tried free-form again and again);
 * one point read, then one or two writes (see `raiseWindowTimes`).
 */
export async function learnWindowClosed(c: Collections, key: WindowKey, atMs = Date.now()): Promise<void> {
  const known = await readCustomerWindow(c, key.phoneNumberId, key.to);
  const at = Math.max(Math.floor(atMs / 1000), (known?.lastInboundAt ?? 0) + 1);
  await raiseWindowTimes(c, 'refusedAt', [{ id: customerWindowId(key.phoneNumberId, key.to), at }]);
}
