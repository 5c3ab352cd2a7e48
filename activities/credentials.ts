import type { Config } from '../src/config';
import type { GraphClient } from '../src/adapters/graph/client';
import type { Collections } from '../src/adapters/store/db';
import { markTokenChecked } from '../src/adapters/store/credential-pauses';
import type { LaunchDeps } from '../src/lifecycle/launch';
import type { Logger } from '../src/logger';
import { probeToken, resumeToken } from '../src/sending/credentials';
import type { TokenProbe } from '../workflows/contracts';

/** The credentials workflow's activities (src/sending/credentials.ts). */
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
