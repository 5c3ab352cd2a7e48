import { log, proxyLocalActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { AlertInput, AlertSink } from '../activities/types';
import { ALERT_ACTIVITY_OPTIONS } from './activity-options';

// A local activity: one history marker per delivery instead of an activity's three events and a
// workflow task (a delivery is one HTTP call or a log line, well within a workflow task).
const alerter = proxyLocalActivities<Pick<Activities, 'deliverAlert'>>(ALERT_ACTIVITY_OPTIONS);

/**
 * Sends one alert to each of `sinks` in the background (`deliverAlert`, bounded retries): a sink
 * that keeps failing is logged and the run goes on. Returns the deliveries, which a run awaits
 * before it ends or continues as new. The one fan-out of the lifecycle, credentials and forward
 * backlog workflows.
 */
export function alertInBackground(sinks: readonly AlertSink[], alert: AlertInput): Promise<void>[] {
  return sinks.map((sink) =>
    alerter.deliverAlert(sink, alert).catch((err: unknown) => {
      log.warn('alert sink failed after retries', {
        sink,
        wabaId: alert.wabaId,
        ...(alert.incident ? { incident: alert.incident } : {}),
        error: String(err),
      });
    }),
  );
}
