import { log, proxyActivities, proxyLocalActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { AlertInput, AlertSink } from '../contracts';
import { ALERT_ACTIVITY_OPTIONS } from '../activity-options';

// The `log` sink writes a line on the worker: a local activity, one history marker and no task of
// its own. The other sinks (webhook, Slack, PagerDuty) are HTTP calls that may hang or fail for a
// while: regular activities with bounded retries, so a slow sink never holds the run's workflow
// task (and with it every signal and update) open.
const logger = proxyLocalActivities<Pick<Activities, 'deliverAlert'>>({
  startToCloseTimeout: '10 seconds',
  retry: { initialInterval: '1 second', maximumAttempts: 3 },
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
    // The log line only (no HTTP in a local activity): the run's sinks are the worker's, read at
    // its start and before each level, so the other sinks are in `sinks` already.
    (sink === 'log'
      ? logger.deliverAlert(sink, { ...alert, runSinks: undefined })
      : alerter.deliverAlert(sink, alert)
    ).catch((err: unknown) => {
      log.warn('alert sink failed after retries', {
        sink,
        wabaId: alert.wabaId,
        ...(alert.incident ? { incident: alert.incident } : {}),
        error: String(err),
      });
    }),
  );
}
