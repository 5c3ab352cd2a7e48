/** Every workflow the worker registers (the worker bundles this file). */
export { wabaLifecycleWorkflow } from './lifecycle/lifecycle.workflow';
export { sendMessageWorkflow } from './sending/send.workflow';
export { credentialsWorkflow } from './lifecycle/credentials.workflow';
export { forwardBacklogWorkflow } from './relay/forward-backlog.workflow';
export { gateProbeSweepWorkflow } from './lifecycle/gate-probes.workflow';
