/**
 * Activity options more than one workflow uses, so each activity has one retry policy whichever
 * workflow calls it. Plain data: safe in the workflow bundle.
 */

/**
 * Alert delivery (`deliverAlert`): bounded, so a sink that is down never holds a workflow back;
 * a delivery that still fails is logged by the workflow and the run goes on.
 */
export const ALERT_ACTIVITY_OPTIONS = {
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumAttempts: 6 },
} as const;

/** The worker's lifecycle settings (`lifecycleSettings`, a local activity: a read of its config). */
export const SETTINGS_ACTIVITY_OPTIONS = {
  startToCloseTimeout: '10 seconds',
  retry: { initialInterval: '1 second', maximumInterval: '10 seconds' },
} as const;
