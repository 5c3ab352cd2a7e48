import {
  continueAsNew,
  proxyActivities,
  proxyLocalActivities,
  setCurrentDetails,
  setHandler,
  sleep,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { AlertInput } from '../contracts';
import { alertInBackground } from '../alerts/alerts.workflow';
import { SETTINGS_ACTIVITY_OPTIONS } from '../activity-options';
import {
  forwardBacklogSignal,
  type ForwardBacklogCarry,
  type ForwardBacklogCheck,
  type ForwardBacklogReport,
} from '../contracts';

/** How often an open backlog alert looks again: the alert age, within these bounds. */
const MIN_CHECK_MS = 1_000;
const MAX_CHECK_MS = 60_000;

const settingsOf = proxyLocalActivities<Pick<Activities, 'lifecycleSettings'>>(SETTINGS_ACTIVITY_OPTIONS);
const acts = proxyActivities<Pick<Activities, 'forwardBacklog'>>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1 second', maximumInterval: '30 seconds' },
});

/**
 * The backlog alert of one forward target (`forward-backlog/<task queue>/<target>`): started by
 * whichever server first sees the target's oldest pending entry wait past FORWARD_BACKLOG_ALERT_AGE
 * (signal-with-start, so N servers raise one alert), it reads the backlog itself, raises one alert
 * (incident `forward/<target>`: a PagerDuty incident, a Slack thread) if the wait is still too
 * long, looks again every alert age (1 s to 1 min), and resolves the alert once no entry waits too
 * long. A run that finds the backlog already gone ends without alerting. Nothing here holds back
 * forwarding or the ack to Meta: the alert only tells operators.
 */
export async function forwardBacklogWorkflow(
  first: ForwardBacklogReport,
  carry: ForwardBacklogCarry = { alerted: false, checks: 0 },
): Promise<{ clearedAt: string; checks: number; alerted: boolean }> {
  const { target } = first;
  const incident = `forward/${target}`;
  let reports = 0;
  setHandler(forwardBacklogSignal, () => {
    reports++;
  });
  const settings = await settingsOf.lifecycleSettings();
  const alerts: Promise<void>[] = [];
  const alert = (kind: 'forwardBacklog' | 'forwardBacklogCleared', check: ForwardBacklogCheck, text: string): void => {
    const full: AlertInput = {
      kind,
      incident,
      wabaId: check.wabaId ?? '',
      level: 0,
      severity: kind === 'forwardBacklog' ? 'page' : 'warning',
      title:
        kind === 'forwardBacklog'
          ? `Forward backlog: target ${target} is not keeping up`
          : `Forward backlog cleared: target ${target} caught up`,
      text,
      state: 'connected',
      queued: check.pending,
      at: new Date().toISOString(),
      runSinks: settings.alertSinks,
    };
    alerts.push(...alertInBackground(settings.alertSinks, full));
  };

  let { alerted, checks } = carry;
  for (;;) {
    const check = await acts.forwardBacklog({ target });
    checks++;
    const ageS = Math.round(check.oldestAgeMs / 1000);
    if (!check.tooOld) {
      if (alerted) {
        alert(
          'forwardBacklogCleared',
          check,
          `No delivery for forward target ${target} has waited longer than ${Math.round(check.alertAfterMs / 1000)} s any more (oldest pending now ${ageS} s, ${check.pending} pending).`,
        );
      }
      await Promise.all(alerts);
      return { clearedAt: new Date().toISOString(), checks, alerted };
    }
    if (!alerted) {
      alert(
        'forwardBacklog',
        check,
        `The oldest delivery waiting for forward target ${target} has waited ${ageS} s (FORWARD_BACKLOG_ALERT_AGE ${Math.round(check.alertAfterMs / 1000)} s); at least ${check.pending} pending${check.deliveryId ? `, oldest ${check.deliveryId}` : ''}. The target is down or not keeping up. Nothing is lost and the ack to Meta is not slowed: the deliveries wait in the outbox, retried with back-off until FORWARD_MAX_AGE, then dead-lettered (GET /v1/deliveries).`,
      );
      alerted = true;
    }
    setCurrentDetails(
      `Forward target ${target}: oldest pending delivery ${ageS} s old, ${check.pending} pending; ${checks} checks, ${reports} server reports in this run.`,
    );
    await sleep(Math.min(MAX_CHECK_MS, Math.max(MIN_CHECK_MS, check.alertAfterMs)));
    if (workflowInfo().continueAsNewSuggested) {
      await Promise.all(alerts);
      await continueAsNew<typeof forwardBacklogWorkflow>(first, { alerted, checks });
    }
  }
}
