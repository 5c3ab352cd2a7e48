/** Every workflow the worker registers (the worker bundles this file). */
export { wabaLifecycleWorkflow } from './lifecycle';
export { sendMessageWorkflow } from './send';
