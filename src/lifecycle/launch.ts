import {
  WithStartWorkflowOperation,
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  WorkflowUpdateStage,
} from '@temporalio/client';
import {
  WabaIdKey,
  gateProbeSweepWorkflowId,
  gateProbedSignal,
  lifecycleEventSignal,
  operatorActionUpdate,
  stateQuery,
  wabaWorkflowId,
  type LifecycleEvent,
  type OperatorAction,
  type OperatorActionResult,
  type ProbeResult,
  type GateProbeSweepWorkflow,
  type WabaLifecycleView,
  type WabaLifecycleWorkflow,
} from '../contracts';
import type { LaunchDeps } from '../launch-deps';
import { PROBE_SWEEP_IDLE_MS, probeSweepPeriodMs } from './machine';

/**
 * The lifecycle launcher: the one door from HTTP handlers and activities into the per-WABA
 * lifecycle workflow. It owns that workflow's id, start options (arguments, search attributes,
 * summary) and the client calls that reach it. Workflow code is referenced by type only, so this
 * module does not import workflow code (no import cycle back into workflow code).
 */

type LifecycleWorkflow = WabaLifecycleWorkflow;
const LIFECYCLE_WORKFLOW = 'wabaLifecycleWorkflow';

/** The start options of a WABA's lifecycle workflow, wherever it is started from. */
function lifecycleStart(deps: LaunchDeps, wabaId: string, startedBy: string) {
  return {
    workflowId: wabaWorkflowId(wabaId),
    taskQueue: deps.taskQueue,
    args: [{ wabaId, settings: deps.lifecycle }] as Parameters<LifecycleWorkflow>,
    typedSearchAttributes: [{ key: WabaIdKey, value: wabaId }],
    staticSummary: `WABA ${wabaId} lifecycle (started by ${startedBy})`,
  };
}

/**
 * Hands a lifecycle event to the WABA's workflow: signals the open run, or starts a new one
 * (signal-with-start). Idempotent in effect: the workflow ignores a key it has seen. Resolves only
 * once Temporal has durably recorded the signal; throws when Temporal is unreachable or, with
 * `deadlineMs`, does not answer in time (the webhook then answers 5xx and Meta redelivers).
 */
export async function deliverLifecycleEvent(
  deps: LaunchDeps,
  event: LifecycleEvent,
  options: { deadlineMs?: number } = {},
): Promise<void> {
  const call = () =>
    deps.client.workflow.signalWithStart<LifecycleWorkflow, [LifecycleEvent]>(LIFECYCLE_WORKFLOW, {
      ...lifecycleStart(deps, event.wabaId, event.type),
      signal: lifecycleEventSignal,
      signalArgs: [event],
    });
  if (options.deadlineMs) await deps.client.withDeadline(Date.now() + options.deadlineMs, call);
  else await call();
}

/** An operator action the workflow refused (it does not apply to the WABA's state); `message` says why. */
export class ActionRefusedError extends Error {
  override name = 'ActionRefusedError';
}

/** What an operator action came to within the caller's wait. */
export type OperatorActionAnswer =
  | { kind: 'applied'; result: OperatorActionResult }
  /** The run accepted it (validated, in its history) and applies it after what it is doing now. */
  | { kind: 'pending' };

/** Temporal did not accept the action within the wait (the worker or the server is too busy). */
export class ActionNotAcceptedError extends Error {
  override name = 'ActionNotAcceptedError';
}

/** How long an operator waits for the action's answer before getting "accepted, pending". */
export const OPERATOR_ACTION_WAIT_MS = 10_000;

/**
 * Applies an operator action through update-with-start, so it also reaches a WABA whose run has
 * ended (an abandoned one: a new run loads its document). Waits at most `waitMs`: `applied` with
 * the WABA's state after the action, or `pending` when the run accepted it but is still busy (it
 * waits for the loop, e.g. behind a drain's cancellation); throws `ActionRefusedError` when the
 * action does not apply, `ActionNotAcceptedError` when Temporal did not accept it in time. No call
 * outlives the wait (an abort signal ends the long poll).
 */
export async function applyOperatorAction(
  deps: LaunchDeps,
  wabaId: string,
  action: OperatorAction,
  waitMs = OPERATOR_ACTION_WAIT_MS,
): Promise<OperatorActionAnswer> {
  const deadline = Date.now() + waitMs;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), waitMs);
  let accepted = false;
  try {
    // A run that ends (nothing left to wait for) just as the update reaches it fails the call
    // without an answer from the workflow: a fresh update-with-start then starts the next run.
    for (let attempt = 1; ; attempt++) {
      const startWorkflowOperation = new WithStartWorkflowOperation<LifecycleWorkflow>(LIFECYCLE_WORKFLOW, {
        ...lifecycleStart(deps, wabaId, `operator ${action.action}`),
        workflowIdConflictPolicy: 'USE_EXISTING',
      });
      accepted = false;
      try {
        return await deps.client.withAbortSignal(abort.signal, async () => {
          const handle = await deps.client.workflow.startUpdateWithStart(operatorActionUpdate, {
            args: [action],
            startWorkflowOperation,
            waitForStage: WorkflowUpdateStage.ACCEPTED,
          });
          accepted = true;
          return { kind: 'applied' as const, result: await handle.result() };
        });
      } catch (err) {
        if (err instanceof WorkflowUpdateFailedError) throw new ActionRefusedError(err.cause?.message ?? err.message);
        if (abort.signal.aborted) {
          if (accepted) return { kind: 'pending' };
          throw new ActionNotAcceptedError(`Temporal did not accept the action within ${waitMs} ms`);
        }
        if (attempt >= 3 || Date.now() + 200 * attempt >= deadline) throw err;
        await new Promise((r) => setTimeout(r, 200 * attempt));
      }
    }
  } finally {
    clearTimeout(timer);
  }
}

/** The open run's `state` query, or undefined when no run is open. */
export async function queryLifecycleState(deps: Pick<LaunchDeps, 'client'>, wabaId: string) {
  try {
    return await deps.client.workflow.getHandle(wabaWorkflowId(wabaId)).query<WabaLifecycleView>(stateQuery);
  } catch {
    return undefined;
  }
}

/**
 * Starts the deployment's gate probe sweep (one run per task queue) unless it runs already; every
 * worker calls it at start-up, so a sweep that ended or was terminated comes back with the next
 * worker start. Its first workflow task comes one sweep period later (`startDelay`): a worker
 * that has just started has nothing in flight for it yet. Resolves `started` or `running`.
 */
export async function startGateProbeSweep(
  deps: Pick<LaunchDeps, 'client' | 'taskQueue' | 'lifecycle'>,
): Promise<'started' | 'running'> {
  try {
    await deps.client.workflow.start<GateProbeSweepWorkflow>('gateProbeSweepWorkflow', {
      workflowId: gateProbeSweepWorkflowId(deps.taskQueue),
      taskQueue: deps.taskQueue,
      args: [{}],
      startDelay: probeSweepPeriodMs(deps.lifecycle) ?? PROBE_SWEEP_IDLE_MS,
      staticSummary: 'Gate probe sweep: probes offboarded WABAs whose probe is due',
    });
    return 'started';
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) return 'running';
    throw err;
  }
}

/**
 * Hands a usable probe to the WABA's open run (a signal, no start: only an open offboarded run can
 * use it). False when no run is open (it ended meanwhile: nothing to reopen).
 */
export async function reportGateProbe(
  deps: Pick<LaunchDeps, 'client'>,
  wabaId: string,
  result: ProbeResult,
): Promise<boolean> {
  try {
    await deps.client.workflow.getHandle(wabaWorkflowId(wabaId)).signal(gateProbedSignal, result);
    return true;
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return false;
    throw err;
  }
}
