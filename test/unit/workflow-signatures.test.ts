import type {
  CredentialsWorkflow,
  ForwardBacklogWorkflow,
  GateProbeSweepWorkflow,
  SendMessageWorkflow,
  WabaLifecycleWorkflow,
} from '../../src/contracts';
import { credentialsWorkflow } from '../../src/lifecycle/credentials.workflow';
import { forwardBacklogWorkflow } from '../../src/relay/forward-backlog.workflow';
import { gateProbeSweepWorkflow } from '../../src/lifecycle/gate-probes.workflow';
import { wabaLifecycleWorkflow } from '../../src/lifecycle/lifecycle.workflow';
import { sendMessageWorkflow } from '../../src/sending/send.workflow';

/**
 * The launchers start workflows by name through the signatures in src/contracts.ts (they
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
