import type {
  CredentialsWorkflow,
  ForwardBacklogWorkflow,
  GateProbeSweepWorkflow,
  SendMessageWorkflow,
  WabaLifecycleWorkflow,
} from '../../workflows/contracts';
import { credentialsWorkflow } from '../../workflows/credentials';
import { forwardBacklogWorkflow } from '../../workflows/forward-backlog';
import { gateProbeSweepWorkflow } from '../../workflows/gate-probes';
import { wabaLifecycleWorkflow } from '../../workflows/lifecycle/workflow';
import { sendMessageWorkflow } from '../../workflows/send';

/**
 * The launchers start workflows by name through the signatures in workflows/contracts.ts (they
 * never import workflow code). Each workflow function must have its signature: the assignments
 * below are checked by `npm run typecheck`, and the names by the worker's bundle at run time.
 */
const signatures: {
  wabaLifecycleWorkflow: WabaLifecycleWorkflow;
  sendMessageWorkflow: SendMessageWorkflow;
  credentialsWorkflow: CredentialsWorkflow;
  forwardBacklogWorkflow: ForwardBacklogWorkflow;
  gateProbeSweepWorkflow: GateProbeSweepWorkflow;
} = { wabaLifecycleWorkflow, sendMessageWorkflow, credentialsWorkflow, forwardBacklogWorkflow, gateProbeSweepWorkflow };

it('each workflow the launchers start by name is exported under that name', () => {
  for (const [name, fn] of Object.entries(signatures)) expect(fn.name).toBe(name);
});
