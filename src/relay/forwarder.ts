import type { Collections, ForwardDoc } from '../adapters/store/db';
import { SIGNATURE_HEADER } from '../adapters/meta/signature';
import {
  entryBytes,
  forwardDelivered,
  forwardFailed,
  oldestPending,
  pendingAgeMs,
  pendingForwards,
  type ForwardHead,
} from './forwards.store';
import type { ForwardSettings } from '../config';
import type { Logger } from '../logger';
import type { ForwardBacklogReport } from '../contracts';
import { signRequest } from './signing';
import { forwardBackoffMs, type ForwardTarget } from './targets';

/**
 * The relay: forwarding Meta's deliveries to the BSP's systems.
 *
 * The service sits at the URL Meta posts every webhook of the app to, so it passes every delivery
 * on (`FORWARD_TARGETS`): inbound messages, echoes, history, contact syncs, statuses and
 * `account_update`, including changes it cannot parse. The `forwards` entry is the one durable
 * record: before the 200 the sink inserts one per target that wants the delivery
 * (`src/relay/targets.ts` decides, by change field and WABA), each holding the exact bytes and
 * Meta's signature, and nothing else for forwarding (no outbox record, claim or flag: a delivery
 * without lifecycle events never meets the outbox relay). One
 * forwarder loop per target (`src/relay/forwarder.ts`, in every server process) sends the bytes as
 * they came, with Meta's `X-Hub-Signature-256` and Standard Webhooks headers
 * (`src/relay/signing.ts`; `webhook-id` is the delivery id, stable across retries), in arrival
 * order per WABA (a failed delivery holds its WABA's later ones back), retrying from 2 s doubling
 * to 1 h, and dead-letters what still fails after `FORWARD_MAX_AGE`. A delivered entry moves to
 * the insert-only `forwarded` log, bytes and all (the archive `POST /v1/deliveries/replay` sends
 * again), and is deleted: three writes per delivery and target. Two server processes may both send
 * an entry (at least once); receivers dedupe
 * by `webhook-id`. A target whose oldest pending entry waits past `FORWARD_BACKLOG_ALERT_AGE` is
 * reported by the forwarders that see it (every 30 s per process) to the target's backlog workflow
 * (`src/relay/launch.ts`, signal-with-start of `forward-backlog/<task queue>/<target>`): the
 * workflow id makes N servers one alert; the run reads the backlog itself (`forwardBacklog`
 * activity), alerts the sinks once (incident `forward/<target>`), looks again every alert age and
 * resolves when the wait is back under it.
 */

export interface ForwarderOptions {
  /** How often each target's pending entries are looked at. Default 500 ms. */
  pollMs?: number;
  /** Requests in flight per target (different WABAs). Default 8. */
  concurrency?: number;
  /** Deadline of one request. Default 10 s. */
  timeoutMs?: number;
}

/** The backlog alert's rule (the forwarder's log line and the /metrics gauge): a wait past FORWARD_BACKLOG_ALERT_AGE. */
export const backlogTooOld = (oldestPendingAgeMs: number, forward: Pick<ForwardSettings, 'backlogAlertMs'>): boolean =>
  oldestPendingAgeMs > forward.backlogAlertMs;

/** How often a server tells a target's backlog workflow that the backlog is still too old. */
export const BACKLOG_REPORT_MS = 30_000;

/** The forwarder of one process; `stop` ends its loops after the requests in flight. */
export interface Forwarder {
  /** Resolves once no target has a pending entry that is due (tests). */
  stop(): Promise<void>;
}

/**
 * Forwards every recorded Meta delivery to each target that wants it, byte for byte, at least
 * once: the exact body Meta sent, Meta's own `X-Hub-Signature-256`, and our Standard Webhooks
 * headers (`webhook-id` = the delivery id, the same on every retry, so receivers dedupe by it).
 *
 * - Order: per target, entries go in arrival order; a WABA whose delivery failed holds its later
 *   deliveries back until it goes through (other WABAs go on). Across processes the order holds
 *   only as far as one process handles a WABA's entries at a time.
 * - Retries: exponential back-off from 2 s to 1 h; an entry that has waited longer than
 *   `maxAgeMs` (`pendingAgeMs`: since receipt, or since its replay or retry) and still fails is
 *   dead-lettered (`state: dead`; `POST /v1/deliveries/:id/retry` puts it back, with a fresh clock).
 * - The ack to Meta never waits for this: the sink only records the delivery.
 */
export function startForwarder(
  deps: {
    c: Collections;
    logger: Logger;
    forward: ForwardSettings;
    /**
     * Raises the backlog alert with the alert sinks (`reportForwardBacklog`: one workflow per
     * target, whichever server reports). Called at most every `BACKLOG_REPORT_MS` per target while
     * its backlog is too old; a failure is logged and tried again then.
     */
    reportBacklog?: (report: ForwardBacklogReport) => Promise<void>;
  },
  options: ForwarderOptions = {},
): Forwarder {
  const { c } = deps;
  const { targets, maxAgeMs } = deps.forward;
  const logger = deps.logger.child({ component: 'forwarder' });
  const pollMs = options.pollMs ?? 500;
  const concurrency = options.concurrency ?? 8;
  const timeoutMs = options.timeoutMs ?? 10_000;
  let stopped = false;
  const loops: Promise<void>[] = [];
  /** Targets whose backlog alert this process has raised (logged once per episode). */
  const alerting = new Set<string>();
  /** When this process last reported each target's backlog to its alert workflow. */
  const reportedAt = new Map<string, number>();

  /** Raises the backlog alert when a pending entry has waited too long; clears it once none has. */
  function watchBacklog(target: ForwardTarget, entries: ForwardHead[]): void {
    const now = Date.now();
    const { ageMs, oldest } = oldestPending(entries, now);
    const log = { alert: true, target: target.name, oldestAgeSeconds: Math.round(ageMs / 1000) };
    if (backlogTooOld(ageMs, deps.forward) && !alerting.has(target.name)) {
      alerting.add(target.name);
      logger.error(
        { ...log, pendingAtLeast: entries.length, deliveryId: oldest?.deliveryId, wabaId: oldest?.wabaIds[0] },
        'forward backlog older than FORWARD_BACKLOG_ALERT_AGE: the target is down or not keeping up (nothing is lost; the ack to Meta is not slowed)',
      );
    } else if (!backlogTooOld(ageMs, deps.forward) && alerting.delete(target.name)) {
      logger.info({ ...log, alert: false }, 'forward backlog back under FORWARD_BACKLOG_ALERT_AGE');
      reportedAt.delete(target.name);
    }
    const report = deps.reportBacklog;
    if (!report || !alerting.has(target.name) || now - (reportedAt.get(target.name) ?? 0) < BACKLOG_REPORT_MS) return;
    reportedAt.set(target.name, now);
    report({
      target: target.name,
      oldestAgeMs: ageMs,
      pending: entries.length,
      ...(oldest ? { deliveryId: oldest.deliveryId } : {}),
      ...(oldest?.wabaIds[0] ? { wabaId: oldest.wabaIds[0] } : {}),
    }).catch((err: unknown) =>
      logger.warn(
        { target: target.name, err: String(err).slice(0, 300) },
        'forward backlog alert not raised; trying again',
      ),
    );
  }

  /**
   * Sends the entry's bytes (read by `_id`). Undefined when there is nothing to send: the entry is
   * gone (another process delivered it meanwhile).
   */
  async function send(
    target: ForwardTarget,
    entry: ForwardHead,
  ): Promise<{ status: number; entry: ForwardDoc } | undefined> {
    const bytes = await entryBytes(c, entry._id);
    if (!bytes) return undefined;
    const body = Buffer.from(bytes.raw, 'base64');
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'user-agent': 'coexist-relay-forwarder',
      ...signRequest(target.secrets, entry.deliveryId, new Date(), body),
      ...(bytes.signature ? { [SIGNATURE_HEADER]: bytes.signature } : {}),
    };
    const res = await fetch(target.url, { method: 'POST', headers, body, signal: AbortSignal.timeout(timeoutMs) });
    await res.arrayBuffer().catch(() => undefined);
    if (res.status < 200 || res.status >= 300) throw new Error(`HTTP ${res.status}`);
    return { status: res.status, entry: { ...entry, ...bytes } };
  }

  async function attempt(target: ForwardTarget, entry: ForwardHead): Promise<boolean> {
    const attempts = entry.attempts + 1;
    try {
      const sent = await send(target, entry);
      if (!sent) return true;
      await forwardDelivered(c, sent.entry, { attempts, status: sent.status, at: new Date().toISOString() });
      return true;
    } catch (err) {
      const dead = pendingAgeMs(entry, Date.now()) > maxAgeMs;
      const lastError = String(err instanceof Error ? err.message : err).slice(0, 200);
      await forwardFailed(c, entry, { attempts, nextAt: Date.now() + forwardBackoffMs(attempts), lastError, dead });
      const log = { target: target.name, deliveryId: entry.deliveryId, wabaId: entry.wabaIds[0], attempts, lastError };
      if (dead) logger.error(log, 'forward dead-lettered: the target kept failing past the maximum age');
      else logger.warn(log, 'forward failed; will retry');
      return false;
    }
  }

  /** One pass over a target's pending entries, in arrival order, holding back a failed WABA's later ones. */
  async function pass(target: ForwardTarget): Promise<void> {
    const entries = await pendingForwards(c, target.name, 500);
    watchBacklog(target, entries);
    const blocked = new Set<string>();
    const now = Date.now();
    const running = new Set<Promise<void>>();
    /** The WABAs of deliveries in flight: a later delivery of the same WABA waits for them. */
    const busy = new Set<string>();
    for (const entry of entries) {
      if (stopped) break;
      const wabas = entry.wabaIds.length > 0 ? entry.wabaIds : ['(none)'];
      if (wabas.some((w) => blocked.has(w))) continue;
      if (entry.nextAt > now) {
        for (const w of wabas) blocked.add(w); // not due: its WABA's later entries wait too
        continue;
      }
      while (wabas.some((w) => busy.has(w)) || running.size >= concurrency) await Promise.race(running);
      if (wabas.some((w) => blocked.has(w))) continue;
      for (const w of wabas) busy.add(w);
      const task: Promise<void> = attempt(target, entry)
        .then((ok) => {
          if (!ok) for (const w of wabas) blocked.add(w);
        })
        .catch((err: unknown) => {
          for (const w of wabas) blocked.add(w);
          logger.warn({ target: target.name, err: String(err) }, 'recording a forward failed');
        })
        .finally(() => {
          for (const w of wabas) busy.delete(w);
          running.delete(task);
        });
      running.add(task);
    }
    await Promise.all(running);
  }

  for (const target of targets) {
    loops.push(
      (async () => {
        while (!stopped) {
          try {
            await pass(target);
          } catch (err) {
            logger.warn({ target: target.name, err: String(err) }, 'forward pass failed; retrying');
          }
          await new Promise((r) => setTimeout(r, pollMs));
        }
      })(),
    );
  }

  return {
    async stop() {
      stopped = true;
      await Promise.all(loops);
    },
  };
}
