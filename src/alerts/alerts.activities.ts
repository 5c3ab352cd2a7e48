import type { Collections } from '../adapters/store/db';
import { closeThread, openThreadOf, saveThread } from './alert-threads.store';
import type { Config } from '../config';
import type { Logger } from '../logger';
import type { AlertInput, AlertSink } from '../contracts';

export interface AlertDeps {
  c: Collections;
  logger: Logger;
  alerts: Config['alerts'];
  timeoutMs?: number;
  /** Counts each attempt to deliver to a sink other than the log (`coexist_relay_alert_deliveries_total`). */
  onDelivery?: (sink: Exclude<AlertSink, 'log'>, outcome: 'delivered' | 'failed') => void;
}

/** True for the alert that ends a WABA's incident (the queue drained after a reconnection; a removed WABA back). */
const resolves = (a: AlertInput): boolean =>
  a.kind === 'reconnected' ||
  a.kind === 'partnerBack' ||
  a.kind === 'credentialsRestored' ||
  a.kind === 'forwardBacklogCleared';

/** The incident an alert belongs to: its own (`token/…`, `forward/…`) or its WABA's. */
const incidentOf = (a: Pick<AlertInput, 'wabaId' | 'incident'>): string => a.incident ?? `waba/${a.wabaId}`;

/** The key of an incident's Slack thread (`alert_threads`): the WABA id for a WABA's incident. */
const threadKeyOf = (a: AlertInput): string => a.incident ?? a.wabaId;

/** What an alert is about, for people: the WABA and its state, or the incident. */
const subjectOf = (a: AlertInput): string =>
  a.incident ? a.incident : `WABA ${a.wabaId}, ${a.state}, level ${a.level}`;

/** Slack message text (incoming webhook or Web API). */
export function slackMessage(a: AlertInput): { text: string } {
  const icon = resolves(a)
    ? ':white_check_mark:'
    : a.severity === 'critical'
      ? ':rotating_light:'
      : a.severity === 'page'
        ? ':pager:'
        : ':warning:';
  return { text: `${icon} *${a.title}* (${subjectOf(a)})\n${a.text}` };
}

/**
 * PagerDuty's dedup key: one incident per WABA at a time (a resolved one is reopened as a new
 * incident), and one per refused token or forward target (`incident`).
 */
export const pagerDutyDedupKey = (a: Pick<AlertInput, 'wabaId' | 'incident'>): string =>
  `coexist-relay/${incidentOf(a)}`;

/**
 * The PagerDuty Events API v2 body: `trigger` (a new incident, or an update of the open one with
 * the same dedup key) for every alert but the reconnection, which sends `resolve`.
 */
export function pagerDutyEvent(a: AlertInput, routingKey: string): Record<string, unknown> {
  const dedup_key = pagerDutyDedupKey(a);
  if (resolves(a)) return { routing_key: routingKey, event_action: 'resolve', dedup_key };
  return {
    routing_key: routingKey,
    event_action: 'trigger',
    dedup_key,
    payload: {
      summary: (a.incident ? a.title : `${a.title} (WABA ${a.wabaId})`).slice(0, 1024),
      source: 'coexist-relay',
      severity: a.severity === 'critical' ? 'critical' : a.severity === 'page' ? 'error' : 'warning',
      component: a.incident ?? `waba ${a.wabaId}`,
      group: 'whatsapp-coexistence',
      class: a.kind,
      timestamp: a.at,
      custom_details: {
        wabaId: a.wabaId,
        ...(a.incident ? { incident: a.incident } : {}),
        state: a.state,
        level: a.level,
        queued: a.queued,
        text: a.text,
      },
    },
  };
}

async function post(
  url: string,
  body: unknown,
  timeoutMs: number,
  headers: Record<string, string> = {},
): Promise<Response> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
  if (!res.ok) throw new Error(`alert sink answered HTTP ${res.status}`);
  return res;
}

/**
 * The `log` sink: one line on the worker's log (`warn` for a warning, `error` above). Also called
 * by the lifecycle's `saveWaba` for the alerts of the step it saves (src/lifecycle/lifecycle.activities.ts).
 */
export function logAlert(logger: Logger, alert: AlertInput): void {
  const { runSinks: _runSinks, ...shown } = alert;
  const level = alert.severity === 'warning' ? 'warn' : 'error';
  logger[level]({ alert: true, ...shown }, `ALERT: ${alert.title}`);
}

export function createAlertActivities(deps: AlertDeps) {
  const timeoutMs = deps.timeoutMs ?? 10_000;
  const { c, alerts } = deps;
  const missing = (sink: AlertSink, a: AlertInput): void =>
    deps.logger.warn(
      { alert: true, sink, wabaId: a.wabaId, title: a.title },
      `alert sink ${sink} is not configured on this worker: alert not delivered there`,
    );

  /**
   * Slack Web API: the first alert of an incident starts a thread (its `ts` is stored per WABA),
   * later ones reply in it, and the reconnection closes it. A thread id is stored only after Slack
   * answered, so a retry after a lost answer can post the opening message twice, never lose one.
   */
  async function slackThreaded(api: NonNullable<Config['alerts']['slackApi']>, a: AlertInput): Promise<void> {
    const key = threadKeyOf(a);
    const open = await openThreadOf(c, key);
    const res = await post(
      `${api.baseUrl}/chat.postMessage`,
      { channel: api.channel, ...slackMessage(a), ...(open ? { thread_ts: open.ts } : {}) },
      timeoutMs,
      { authorization: `Bearer ${api.botToken}` },
    );
    const answer = (await res.json()) as { ok?: boolean; ts?: string; channel?: string; error?: string };
    if (!answer.ok) throw new Error(`Slack refused the alert: ${answer.error ?? 'no reason given'}`);
    if (!open && answer.ts && !resolves(a)) {
      await saveThread(c, {
        _id: key,
        channel: answer.channel ?? api.channel,
        ts: answer.ts,
        open: true,
        openedAt: a.at,
      });
    }
    if (open && resolves(a)) await closeThread(c, key);
  }

  // One incident's Slack alerts one after the other in this process, so a level raised while the
  // incident's first message is still in flight replies in its thread instead of opening another.
  const slackChains = new Map<string, Promise<void>>();
  function slackInOrder(api: NonNullable<Config['alerts']['slackApi']>, a: AlertInput): Promise<void> {
    const key = threadKeyOf(a);
    const previous = slackChains.get(key) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(() => slackThreaded(api, a));
    const tail = next.catch(() => undefined);
    slackChains.set(key, tail);
    void tail.then(() => {
      if (slackChains.get(key) === tail) slackChains.delete(key);
    });
    return next;
  }

  const configured: Record<Exclude<AlertSink, 'log'>, boolean> = {
    webhook: Boolean(alerts.webhookUrl),
    slack: Boolean(alerts.slackApi ?? alerts.slackUrl),
    pagerduty: Boolean(alerts.pagerduty),
  };

  /** Delivers to a sink other than the log, counting the attempt; a sink this worker lacks is only logged. */
  async function deliver(sink: Exclude<AlertSink, 'log'>, a: AlertInput): Promise<void> {
    try {
      if (!(await deliverTo(sink, a))) return missing(sink, a);
      deps.onDelivery?.(sink, 'delivered');
    } catch (err) {
      deps.onDelivery?.(sink, 'failed');
      throw err;
    }
  }

  /** False when this worker has no such sink configured. */
  async function deliverTo(sink: Exclude<AlertSink, 'log'>, a: AlertInput): Promise<boolean> {
    switch (sink) {
      case 'webhook':
        if (!alerts.webhookUrl) return false;
        await post(alerts.webhookUrl, a, timeoutMs); // the alert as raised: `kind` says what happened
        return true;
      case 'slack':
        if (alerts.slackApi) await slackInOrder(alerts.slackApi, a);
        else if (alerts.slackUrl) await post(alerts.slackUrl, slackMessage(a), timeoutMs);
        else return false;
        return true;
      case 'pagerduty':
        if (!alerts.pagerduty) return false;
        await post(alerts.pagerduty.eventsUrl, pagerDutyEvent(a, alerts.pagerduty.routingKey), timeoutMs);
        return true;
    }
  }

  return {
    /**
     * Delivers one alert to one sink. Throws on failure so Temporal retries it; the lifecycle
     * workflow gives up after a few attempts and goes on (a failing sink never breaks it).
     */
    async deliverAlert(sink: AlertSink, alert: AlertInput): Promise<void> {
      const { runSinks, ...shown } = alert;
      if (sink !== 'log') return deliver(sink, shown);
      logAlert(deps.logger, alert);
      // Settings of this worker, read now: a sink the run was started without still gets it.
      if (runSinks) {
        const extra = (Object.keys(configured) as Exclude<AlertSink, 'log'>[]).filter(
          (s) => configured[s] && !runSinks.includes(s),
        );
        await Promise.all(extra.map((s) => deliver(s, shown)));
      }
    },
  };
}
