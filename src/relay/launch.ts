import {
  forwardBacklogSignal,
  forwardBacklogWorkflowId,
  type ForwardBacklogReport,
  type ForwardBacklogWorkflow,
} from '../contracts';
import type { LaunchDeps } from '../launch-deps';

/**
 * The relay's launcher: the one door into the forward backlog workflow (its id and start options).
 * Workflow code is referenced by type only.
 */

/**
 * Tells the target's backlog workflow what a server saw (signal-with-start: one run per target at
 * a time, so any number of servers raise one alert; a report after a run resolved starts the next).
 */
export async function reportForwardBacklog(
  deps: Pick<LaunchDeps, 'client' | 'taskQueue'>,
  report: ForwardBacklogReport,
): Promise<void> {
  await deps.client.workflow.signalWithStart<ForwardBacklogWorkflow, [ForwardBacklogReport]>('forwardBacklogWorkflow', {
    workflowId: forwardBacklogWorkflowId(deps.taskQueue, report.target),
    taskQueue: deps.taskQueue,
    args: [report],
    signal: forwardBacklogSignal,
    signalArgs: [report],
    staticSummary: `Forward backlog: target ${report.target} is not keeping up`,
  });
}
