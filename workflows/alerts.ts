import { log, proxyActivities, proxyLocalActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { AlertInput, AlertSink } from '../activities/types';
import { ALERT_ACTIVITY_OPTIONS } from './activity-options';

// First as a local activity, once, with a short deadline: one history marker for a delivery that
// works (a log line, one HTTP call) instead of an activity's three events and a workflow task.
// A delivery that fails is retried as a regular activity with bounded retries: a local activity
// that retries holds its workflow task open, and with it everything else the run has to do.
const quick = proxyLocalActivities<Pick<Activities, 'deliverAlert'>>({
  startToCloseTimeout: '10 seconds',
  retry: { maximumAttempts: 1 },
});
const alerter = proxyActivities<Pick<Activities, 'deliverAlert'>>(ALERT_ACTIVITY_OPTIONS);

/**
 * Sends one alert to each of `sinks` in the background (`deliverAlert`, bounded retries): a sink
 * that keeps failing is logged and the run goes on. Returns the deliveries, which a run awaits
 * before it ends or continues as new. The one fan-out of the lifecycle, credentials and forward
 * backlog workflows.
 */
export function alertInBackground(sinks: readonly AlertSink[], alert: AlertInput): Promise<void>[] {
  return sinks.map((sink) =>
    quick
      .deliverAlert(sink, alert)
      .catch(() => alerter.deliverAlert(sink, alert))
      .catch((err: unknown) => {
        log.warn('alert sink failed after retries', {
          sink,
          wabaId: alert.wabaId,
          ...(alert.incident ? { incident: alert.incident } : {}),
          error: String(err),
        });
      }),
  );
}
