import type { Logger } from '../src/logger';
import type { AlertInput, AlertSink } from './types';

export interface AlertDeps {
  logger: Logger;
  webhookUrl?: string;
  slackUrl?: string;
  timeoutMs?: number;
}

/** Slack-compatible incoming-webhook body. */
export function slackMessage(a: AlertInput): { text: string } {
  const icon = a.severity === 'critical' ? ':rotating_light:' : a.severity === 'page' ? ':pager:' : ':warning:';
  return { text: `${icon} *${a.title}* (WABA ${a.wabaId}, ${a.state}, level ${a.level})\n${a.text}` };
}

async function post(url: string, body: unknown, timeoutMs: number): Promise<void> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
  if (!res.ok) throw new Error(`alert sink answered HTTP ${res.status}`);
}

export function createAlertActivities(deps: AlertDeps) {
  const timeoutMs = deps.timeoutMs ?? 10_000;
  const missing = (sink: AlertSink, a: AlertInput): void =>
    deps.logger.warn(
      { alert: true, sink, wabaId: a.wabaId, title: a.title },
      `alert sink ${sink} is not configured on this worker: alert not delivered there`,
    );
  const toWebhook = async (a: AlertInput): Promise<void> =>
    deps.webhookUrl ? post(deps.webhookUrl, { kind: 'coexist-relay.alert', ...a }, timeoutMs) : missing('webhook', a);
  const toSlack = async (a: AlertInput): Promise<void> =>
    deps.slackUrl ? post(deps.slackUrl, slackMessage(a), timeoutMs) : missing('slack', a);
  return {
    /**
     * Delivers one alert to one sink. Throws on failure so Temporal retries it; the lifecycle
     * workflow gives up after a few attempts and goes on (a failing sink never breaks it).
     */
    async deliverAlert(sink: AlertSink, alert: AlertInput): Promise<void> {
      const { runSinks, ...shown } = alert;
      switch (sink) {
        case 'log': {
          const level = alert.severity === 'warning' ? 'warn' : 'error';
          deps.logger[level]({ alert: true, ...shown }, `ALERT: ${alert.title}`);
          // Settings of this worker, read now: a sink the run was started without still gets it.
          if (runSinks) {
            const extra: Promise<void>[] = [];
            if (deps.webhookUrl && !runSinks.includes('webhook')) extra.push(toWebhook(shown));
            if (deps.slackUrl && !runSinks.includes('slack')) extra.push(toSlack(shown));
            await Promise.all(extra);
          }
          return;
        }
        case 'webhook':
          return toWebhook(shown);
        case 'slack':
          return toSlack(shown);
      }
    },
  };
}
