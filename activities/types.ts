import type { AlertSink, SendOutcome, WabaState } from '../workflows/contracts';

/** An operator alert, as the lifecycle workflow raises it. Plain data. */
export interface AlertInput {
  wabaId: string;
  /**
   * What happened (absent in alerts recorded before it existed). Incident sinks open or update the
   * WABA's incident on every kind but `reconnected`, which resolves it.
   */
  kind?: string;
  /**
   * The incident the alert belongs to, when it is not the WABA's offboarding: `token/<source>` (a
   * refused token), `forward/<target>` (a forward backlog). One PagerDuty dedup key and one Slack
   * thread per incident; absent: the WABA's (`waba/<wabaId>`).
   */
  incident?: string;
  /** Escalation level (0 for alerts that are not escalation levels). */
  level: number;
  severity: 'warning' | 'page' | 'critical';
  title: string;
  text: string;
  state: WabaState;
  queued: number;
  at: string;
  /**
   * The sinks the run was started with (its settings). The worker's own sinks are read at run time:
   * the `log` delivery also sends to a sink this worker has configured and the run does not list.
   */
  runSinks?: AlertSink[];
}

export type { AlertSink };

export interface DrainInput {
  wabaId: string;
  /** `reconnected`: the WABA came back (or an operator forced it); `stray`: entries queued while the gate reopened. */
  mode: 'reconnected' | 'stray';
}

/** What a drain did; `stopped` when Meta proved the account unusable (the rest stays queued). */
export interface DrainResult {
  sent: number;
  failed: number;
  expired: number;
  /** Entries skipped because an earlier, interrupted attempt had already settled them. */
  alreadySettled: number;
  /** `credentials`: Meta refused the token; the rest waits for the token's pause to lift. */
  stopped?: 'account_unusable' | 'credentials';
  detail?: string;
}

export interface FailQueueInput {
  wabaId: string;
  reason: string;
}

/** The admit activity's answer: a terminal outcome, or `queued` (the drain will settle it). */
export type AdmitResult = SendOutcome;
