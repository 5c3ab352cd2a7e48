import type { GraphClient, SendMessageInput } from '../adapters/graph/client';
import { isGraphApiError, type GraphApiError } from '../adapters/graph/errors';

/**
 * What one Cloud API send attempt answered, classified once (src/adapters/graph/errors.ts) for
 * both senders. What each answer then means for the message, the gate, the token and the pacer is
 * the send-outcome policy's (src/sending/outcome.ts), which the direct send
 * (src/sending/send.activities.ts) and the drain (src/sending/drain.activities.ts) carry out.
 */
export type Attempt =
  /** `sentAs`: the window was closed and the message's fallback template went (src/sending/window.ts). */
  | { kind: 'sent'; wamid: string; sentAs?: 'fallback_template' }
  /** Meta refused this message for good: fail it with Meta's code and text. */
  | { kind: 'failed'; error: GraphApiError }
  /** The account cannot send: keep the message queued and close the gate (`detail` says why). */
  | { kind: 'unusable'; error: GraphApiError; detail: string }
  /** Meta refused the token (codes 0, 190): keep the message queued and pause the token (src/lifecycle/credentials.ts). */
  | { kind: 'credentials'; error: GraphApiError; detail: string }
  /** Transient: try again later (throttling, 5xx, network). */
  | { kind: 'retry'; error: GraphApiError };

/** Makes one send attempt and classifies its result. Errors other than Meta's are rethrown. */
export async function attemptSend(graph: GraphClient, input: SendMessageInput): Promise<Attempt> {
  try {
    const sent = await graph.sendMessage(input);
    return { kind: 'sent', wamid: sent.wamid };
  } catch (err) {
    if (!isGraphApiError(err)) throw err;
    switch (err.errorClass) {
      case 'permanent':
        return { kind: 'failed', error: err };
      case 'account_unusable': {
        const code = `${err.code}${err.subcode ? `/${err.subcode}` : ''}`;
        const detail = `${err.reason} (Meta code ${code}): ${err.message}`;
        // A refused token is not the account's state: every WABA using it is paused, none closed.
        return err.reason === 'auth_failed'
          ? { kind: 'credentials', error: err, detail }
          : { kind: 'unusable', error: err, detail };
      }
      case 'retry':
        return { kind: 'retry', error: err };
    }
  }
}
