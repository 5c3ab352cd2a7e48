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
  return {
    /**
     * Delivers one alert to one sink. Throws on failure so Temporal retries it; the lifecycle
     * workflow gives up after a few attempts and goes on (a failing sink never breaks it).
     */
    async deliverAlert(sink: AlertSink, alert: AlertInput): Promise<void> {
      switch (sink) {
        case 'log': {
          const level = alert.severity === 'warning' ? 'warn' : 'error';
          deps.logger[level]({ alert: true, ...alert }, `ALERT: ${alert.title}`);
          return;
        }
        case 'webhook':
          if (!deps.webhookUrl) return;
          return post(deps.webhookUrl, { kind: 'coexist-relay.alert', ...alert }, timeoutMs);
        case 'slack':
          if (!deps.slackUrl) return;
          return post(deps.slackUrl, slackMessage(alert), timeoutMs);
      }
    },
  };
}
