/** Every workflow the worker registers (the worker bundles this file). */
export { wabaLifecycleWorkflow } from './lifecycle/workflow';
export { sendMessageWorkflow } from './send';
export { credentialsWorkflow } from './credentials';
export { forwardBacklogWorkflow } from './forward-backlog';
export { gateProbeSweepWorkflow } from './gate-probes';
