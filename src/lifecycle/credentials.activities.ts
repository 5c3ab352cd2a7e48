import type { Config } from '../config';
import type { GraphClient } from '../adapters/graph/client';
import type { Collections } from '../adapters/store/db';
import { markTokenChecked } from './credential-pauses.store';
import type { LaunchDeps } from '../launch-deps';
import type { Logger } from '../logger';
import { probeToken, resumeToken } from './credentials';
import type { TokenProbe } from '../contracts';

/** The credentials workflow's activities (src/lifecycle/credentials.ts). */
export function createCredentialsActivities(deps: {
  c: Collections;
  graph: GraphClient;
  launch: LaunchDeps;
  config: Config;
  logger: Logger;
}) {
  const { c, graph } = deps;
  return {
    /** Reads the number's node with the token of its WABA, and marks the pause as still watched. */
    async probeToken(input: { source: string; wabaId: string; phoneNumberId: string }): Promise<TokenProbe> {
      const probe = await probeToken(graph, input.wabaId, input.phoneNumberId);
      await markTokenChecked(c, input.source, new Date().toISOString());
      deps.logger.info(
        { wabaId: input.wabaId, tokenSource: input.source, works: probe.works, detail: probe.detail },
        'token probe',
      );
      return probe;
    },
    /** Lifts the token's pause and asks the WABAs that wait on it to drain; returns how many. */
    resumeToken: (input: { source: string; resumedAt: string }): Promise<number> =>
      resumeToken({ c, launch: deps.launch, graph: deps.config.graph }, input.source, input.resumedAt),
  };
}
