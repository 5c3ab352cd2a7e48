import type { GraphClient, SendMessageInput } from '../adapters/graph/client';
import { isGraphApiError, type GraphApiError } from '../adapters/graph/errors';

/**
 * What one Cloud API send attempt means for the message, decided in one place for the direct send
 * path (`activities/send.ts`) and the drain (`activities/drain.ts`).
 */
export type Attempt =
  | { kind: 'sent'; wamid: string }
  /** Meta refused this message for good: fail it with Meta's code and text. */
  | { kind: 'failed'; error: GraphApiError }
  /** The account cannot send: keep the message queued and close the gate (`detail` says why). */
  | { kind: 'unusable'; error: GraphApiError; detail: string }
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
        return { kind: 'unusable', error: err, detail: `${err.reason} (Meta code ${code}): ${err.message}` };
      }
      case 'retry':
        return { kind: 'retry', error: err };
    }
  }
}
