/**
 * Activities of the baseline workflows (see baseline-workflows.ts): the same single Cloud API POST
 * the send path makes (through the project's Graph client, so the transport is identical), with no
 * database access, no gate check and no pacing; and a no-op.
 */
import type { GraphClient } from '../src/adapters/graph/client';
import type { SendRequest } from '../src/contracts';

export function createBaselineActivities(deps: { graph: GraphClient }) {
  return {
    /** `POST /<version>/<phoneNumberId>/messages`, once. Throws the Graph client's error (retried by Temporal). */
    async postMessage(req: SendRequest): Promise<{ wamid: string }> {
      const content =
        req.type === 'text' ? { type: req.type, text: req.text } : { type: req.type, template: req.template };
      const sent = await deps.graph.sendMessage({ wabaId: '', phoneNumberId: req.phoneNumberId, to: req.to, content });
      return { wamid: sent.wamid };
    },
    async noop(messageId: string): Promise<string> {
      return messageId;
    },
  };
}

export type BaselineActivities = ReturnType<typeof createBaselineActivities>;
