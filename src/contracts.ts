/**
 * The one contracts module: names, ids, message definitions and the plain-data types that cross
 * the workflow boundary. Workflows, activities, the Koa app, the worker, the typed sender client
 * and the tests all import it. It imports only `@temporalio/workflow` and `@temporalio/common` (definitions are plain
 * data, safe in and out of the sandbox).
 */
import { SearchAttributeType, defineSearchAttributeKey } from '@temporalio/common';
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';

/** Default task queue of the worker; overridable with TEMPORAL_TASK_QUEUE. */
export const DEFAULT_TASK_QUEUE = 'coexist-relay';

// ---------------------------------------------------------------------------------------------
// Workflow ids: readable, derived from business ids, one place.

/** The per-WABA lifecycle workflow: at most one open run per WABA. */
export const wabaWorkflowId = (wabaId: string): string => `waba-reconnect/${wabaId}`;
/** One send workflow per accepted message. */
export const sendWorkflowId = (messageId: string): string => `send/${messageId}`;
/**
 * One credentials workflow per token source while Meta refuses that token (src/lifecycle/credentials.ts),
 * per deployment (its task queue: deployments sharing a namespace have their own tokens).
 */
export const credentialsWorkflowId = (taskQueue: string, source: string): string =>
  `credentials/${taskQueue}/${source}`;

/**
 * The gate probe sweep: one per deployment (task queue), started by every worker at start-up
 * (already running: left as it is). It probes the offboarded WABAs whose probe is due and signals
 * the usable ones (src/lifecycle/gate-probes.workflow.ts).
 */
export const gateProbeSweepWorkflowId = (taskQueue: string): string => `gate-probes/${taskQueue}`;

/** The backlog alert of one forward target (one run per target at a time, whichever server saw it). */
export const forwardBacklogWorkflowId = (taskQueue: string, target: string): string =>
  `forward-backlog/${taskQueue}/${target}`;

// ---------------------------------------------------------------------------------------------
// Search attributes (registered on the dev server by the launchers; see SEARCH_ATTRIBUTES).

export const WabaIdKey = defineSearchAttributeKey('WabaId', SearchAttributeType.KEYWORD);
export const WabaStateKey = defineSearchAttributeKey('WabaState', SearchAttributeType.KEYWORD);
export const EscalationLevelKey = defineSearchAttributeKey('EscalationLevel', SearchAttributeType.INT);
/** Why the send gate is closed (`GateCause`), or `none` while it is open. */
export const GateCauseKey = defineSearchAttributeKey('GateCause', SearchAttributeType.KEYWORD);

/** `name=Type` pairs for `temporal server start-dev --search-attribute` and `operator search-attribute create`. */
export const SEARCH_ATTRIBUTES: Record<string, 'Keyword' | 'Int'> = {
  WabaId: 'Keyword',
  WabaState: 'Keyword',
  EscalationLevel: 'Int',
  GateCause: 'Keyword',
};

// ---------------------------------------------------------------------------------------------
// WABA lifecycle.

/**
 * The WABA's state as operators see it.
 * - `connected`: the send gate is open.
 * - `offboarded`: Meta offboarded the Cloud API companion (or a send proved the account unusable);
 *   sends queue; escalation timers run.
 * - `draining`: reconnected; queued messages are going out in order; new sends queue behind them.
 * - `reconnect_abandoned`: the final escalation level passed without a reconnection. A later
 *   ACCOUNT_RECONNECTED still drains and reopens.
 * - `partner_removed`: our access is gone for good; sends are refused.
 */
export type WabaState = 'connected' | 'offboarded' | 'draining' | 'reconnect_abandoned' | 'partner_removed';

/**
 * What the lifecycle workflow reacts to. The first three come from Meta's `account_update`
 * webhook; `SEND_ACCOUNT_UNUSABLE` from a send (synchronous error or `failed` status) whose error
 * means the account cannot send; `QUEUE_STRAY` from a sender that queued a message while the gate
 * was reopening (the workflow drains it).
 */
/**
 * The `account_update` events that drive the per-WABA lifecycle workflow (the others are
 * forwarded as information), and whether each closes the WABA's send gate already at the
 * webhook's ack (`closesGate`: the sink records a gate hold before answering 200, so a burst the
 * relay needs minutes to hand over closes every gate at once). A new event is one row here and its
 * rule in the lifecycle machine (src/lifecycle/machine.ts); ingest hands every row's event to the
 * WABA's run.
 */
export const LIFECYCLE_WEBHOOK_EVENTS = {
  ACCOUNT_OFFBOARDED: { closesGate: true },
  ACCOUNT_RECONNECTED: { closesGate: false },
  PARTNER_REMOVED: { closesGate: true },
  PARTNER_ADDED: { closesGate: false },
} as const satisfies Record<string, { closesGate: boolean }>;
export type LifecycleWebhookEvent = keyof typeof LIFECYCLE_WEBHOOK_EVENTS;
export const LIFECYCLE_EVENTS = Object.keys(LIFECYCLE_WEBHOOK_EVENTS) as LifecycleWebhookEvent[];
/** The events that close the gate at the webhook's ack (`closesGate`). */
export const HOLDING_EVENTS: ReadonlySet<string> = new Set(
  LIFECYCLE_EVENTS.filter((e) => LIFECYCLE_WEBHOOK_EVENTS[e].closesGate),
);

/** True when `event` is one of `LIFECYCLE_EVENTS`. */
export function isLifecycleEvent(event: string): event is LifecycleWebhookEvent {
  return Object.hasOwn(LIFECYCLE_WEBHOOK_EVENTS, event);
}

/** A lifecycle event: Meta's (`LIFECYCLE_EVENTS`) or the service's own (a send's error, a stray queue entry). */
export type LifecycleEventType = LifecycleWebhookEvent | 'SEND_ACCOUNT_UNUSABLE' | 'QUEUE_STRAY';

/**
 * A WABA's lifecycle record: the state its lifecycle run carries (the pure machine's state) and
 * saves as the WABA's document (`wabas`, keyed by the WABA id). Plain data.
 */
export interface WabaRecord {
  wabaId: string;
  state: WabaState;
  since: string;
  escalationLevel: number;
  /** Newest Meta `entry[].time` (Unix s) seen for each lifecycle event; used to spot stale ones. */
  lastOffboardedMetaTime?: number;
  lastReconnectedMetaTime?: number;
  reason?: string;
  events: EventLogEntry[];
  updatedAt: string;
  /** Why the gate is closed and the evidence; absent while open. */
  closure?: GateClosure;
  /** The last reopening of the gate. */
  lastReopen?: GateReopening;
  /** Epoch ms (workflow clock) of the last reconnection applied; internal events older than it are stale. */
  lastReconnectedAt?: number;
  /**
   * The last gate-closing Meta event (`HOLDING_EVENTS`) the run handled, whatever it did with it
   * (applied, joined, stale, ignored): the sink's gate hold for that event, or for an older one,
   * stops counting once this is saved (`holdCounts` in src/lifecycle/gate-holds.store.ts).
   */
  closingHandled?: { key: string; receivedAt: string };
  /** Meta times (Unix s) of the newest partner events, to order them. */
  lastPartnerRemovedMetaTime?: number;
  lastPartnerAddedMetaTime?: number;
  /** The last PARTNER_REMOVED's `disconnection_info`. */
  disconnectionInfo?: DisconnectionInfo;
  /**
   * How many times the lifecycle workflow has written the document. A save whose `rev` is not above
   * the stored one is stale (a local activity run again after its workflow task failed) and skipped.
   */
  rev?: number;
}

/**
 * Why a WABA's send gate is closed; each cause has its reopen rule (ARCHITECTURE.md, "Gate
 * causes"). `offboarded`: Meta's ACCOUNT_OFFBOARDED webhook. `send_error`: a send answered with an
 * "account unusable" error. `failed_status`: a `failed` status webhook with such an error.
 * `partner_removed`: Meta's PARTNER_REMOVED. `operator`: an operator abandoned the WABA.
 * `credentials`: a send or status failed with an auth error (codes 0, 190): the token, not the
 * WABA; never abandoned, reopened by the first probe that succeeds with the token.
 */
export type GateCause = 'offboarded' | 'send_error' | 'failed_status' | 'partner_removed' | 'operator' | 'credentials';

/** Every `GateCause` (the ops API's schema, the metrics' `cause` label). */
export const GATE_CAUSES = [
  'offboarded',
  'send_error',
  'failed_status',
  'partner_removed',
  'operator',
  'credentials',
] as const satisfies readonly GateCause[];

/** How a closed gate was reopened. */
export type ReopenCause =
  | 'reconnected'
  | 'reconnected_by_probe'
  | 'probe_after_grace'
  | 'credentials_restored'
  | 'operator'
  | 'partner_added'
  | 'reinstated';

/** Meta's `disconnection_info` of a PARTNER_REMOVED, when it sent one. */
export interface DisconnectionInfo {
  reason?: string;
  initiatedBy?: string;
}

/** Why the gate is closed and the evidence: recorded when it closes, cleared when it reopens. */
export interface GateClosure {
  cause: GateCause;
  /** ISO time (workflow clock) the gate closed for this cause. */
  at: string;
  /** Meta's `entry[].time` (Unix s) of the webhook that closed it. */
  metaTime?: number;
  /** Epoch ms of what caused it (the send attempt, the status's timestamp). */
  causeTime?: number;
  /** Meta's error code, for `send_error` and `failed_status`. */
  code?: number;
  messageId?: string;
  wamid?: string;
  detail?: string;
  disconnectionInfo?: DisconnectionInfo;
}

/** The last reopening of the gate. */
export interface GateReopening {
  cause: ReopenCause;
  at: string;
  /** The closure it ended. */
  closedBy?: GateCause;
  detail?: string;
}

/** What one probe of Meta's phone-number nodes says about a WABA (see `probeGate`). */
export interface ProbeResult {
  /** `usable`: every registered number can send; `unusable`: one cannot; `unknown`: no answer, no numbers. */
  verdict: 'usable' | 'unusable' | 'unknown';
  /** Plain words: what Meta answered, per number. */
  detail: string;
}

export interface LifecycleEvent {
  /** Dedupe key: the same delivery (or retry) always carries the same key. */
  key: string;
  type: LifecycleEventType;
  wabaId: string;
  /** Meta's `entry[].time` in Unix seconds, when Meta sent one. Used to order events. */
  metaTime?: number;
  /** ISO time the service received it. */
  receivedAt: string;
  source: 'webhook' | 'send' | 'status' | 'operator';
  /** Free text for operators: Meta's disconnection reason, the error that closed the gate, … */
  detail?: string;
  /**
   * Internal events (`source` `send` or `status`): epoch ms of what caused them (the send
   * attempt, the status's timestamp). Older than the last reconnection → stale.
   */
  causeTime?: number;
  /** Meta's error code behind a SEND_ACCOUNT_UNUSABLE. */
  code?: number;
  /**
   * What the error means (`classifyMetaError`'s reason, e.g. `auth_failed` for codes 0 and 190):
   * `auth_failed` closes with cause `credentials`.
   */
  errorReason?: string;
  messageId?: string;
  wamid?: string;
  /**
   * A failed status's `biz_opaque_callback_data`: the key of our send Meta failed (the message id,
   * or `<id>#2`). With it the lifecycle workflow queues the message again, once (late failure).
   */
  sendKey?: string;
  /** PARTNER_REMOVED: Meta's `disconnection_info`. */
  disconnectionInfo?: DisconnectionInfo;
}

/** A message Meta failed after accepting it: what `requeueLateFailure` needs. */
export interface LateFailureInput {
  wabaId: string;
  /** The send's key (`biz_opaque_callback_data` of the failed status). */
  sendKey: string;
  wamid: string;
  code: number;
  /** Epoch ms of the failed status. */
  failedAt: number;
}

/** Whether `requeueLateFailure` queued the message again (else why not). */
export interface LateFailureResult {
  requeued: boolean;
  why?: string;
}

/** One row of the WABA's recent-event log (kept short, newest last). */
export interface EventLogEntry {
  type:
    | LifecycleEventType
    | 'OPERATOR_FORCE_RESUME'
    | 'OPERATOR_FORCE_ABANDON'
    | 'OPERATOR_REINSTATE'
    | 'ESCALATED'
    | 'PROBE';
  at: string;
  metaTime?: number;
  /** What the workflow did with it: applied, duplicate, stale, ignored, … */
  outcome: string;
  detail?: string;
}

/** One escalation level: raised when the WABA has been offboarded for `afterMs`. */
export interface EscalationLevel {
  level: number;
  afterMs: number;
  severity: 'warning' | 'page' | 'critical';
}

/** Settings the lifecycle workflow needs; passed as input so replays see the same values. */
export interface LifecycleSettings {
  /** Ascending by `afterMs`; the last one is final (marks `reconnect_abandoned`). */
  escalation: EscalationLevel[];
  /** At the final level: fail queued messages with `reconnect_timeout`, or keep them queued. */
  onAbandon: 'fail' | 'keep';
  /** Where alerts go: the log always, plus the configured webhook sinks. */
  alertSinks: AlertSink[];
  /**
   * While the gate is closed, probe Meta's phone-number nodes this often (and at each escalation
   * level). Absent: probing is off (`GATE_PROBE_INTERVAL=0`).
   */
  probeIntervalMs?: number;
  /**
   * Back-off of the probes: after the first, each probe waits as long as the gate has been closed
   * (a probe each time the closure's age doubles), at least `probeIntervalMs`, at most this.
   * Absent: every `probeIntervalMs`.
   */
  probeMaxIntervalMs?: number;
  /** A gate closed by a send error or a failed status reopens when a probe says usable this long after closing. */
  probeGraceMs?: number;
}

/** An alert destination: the service log, a generic JSON webhook, a Slack-compatible webhook. */
export type AlertSink = 'log' | 'webhook' | 'slack' | 'pagerduty';

export interface LifecycleInput {
  wabaId: string;
  settings: LifecycleSettings;
}

/** Answer of the `state` query. */
export interface WabaLifecycleView {
  wabaId: string;
  state: WabaState;
  since: string;
  escalationLevel: number;
  queued: number;
  lastEvent?: EventLogEntry;
  events: EventLogEntry[];
  /** Why the gate is closed (absent while open). */
  closure?: GateClosure;
  /** The last reopening. */
  lastReopen?: GateReopening;
  /** The last PARTNER_REMOVED's `disconnection_info`. */
  disconnectionInfo?: DisconnectionInfo;
  /** The last probe of Meta (this run). */
  lastProbe?: ProbeResult & { at: string };
  /** What the run waits for next, in plain words. */
  next: string;
}

/** Operator steering, sent as an update (validated: refused when it does not apply). */
export interface OperatorAction {
  /** `reinstate`: a partner-removed WABA was shared with us again (re-onboarded). */
  action: 'force_resume' | 'force_abandon' | 'reinstate';
  reason: string;
  operator?: string;
}

export interface OperatorActionResult {
  accepted: true;
  state: WabaState;
}

export const lifecycleEventSignal = defineSignal<[LifecycleEvent]>('lifecycleEvent');
/** The gate probe sweep's report to a WABA's run: Meta says every number of the WABA can send. */
export const gateProbedSignal = defineSignal<[ProbeResult]>('gateProbed');
export const stateQuery = defineQuery<WabaLifecycleView>('state');
export const operatorActionUpdate = defineUpdate<OperatorActionResult, [OperatorAction]>('operatorAction');

// ---------------------------------------------------------------------------------------------
// Sending.

/** `in_doubt`: a send's answer was lost (timeout, crash); it may have gone out (src/sending/ledger.ts). */
export type MessageStatus =
  'accepted' | 'queued' | 'sending' | 'in_doubt' | 'sent' | 'failed' | 'expired' | 'cancelled';

/** A template message's `template` object, as the Cloud API takes it. */
export interface TemplateBody {
  name: string;
  language: { code: string };
  components?: unknown[];
}

/** The Cloud API message body we accept (a subset: text and template). */
export type MessageContent =
  { type: 'text'; text: { body: string; preview_url?: boolean } } | { type: 'template'; template: TemplateBody };

/**
 * A business-scoped user id (BSUID): a two-letter country code, a period, up to 128 letters and
 * digits (`US.13491208655302741918`; a parent BSUID shared across portfolios has `ENT`:
 * `US.ENT.11815799212886844830`). Meta's sends take one as `recipient` instead of `to`.
 */
export const BSUID_PATTERN = /^[A-Z]{2}\.(?:ENT\.)?[A-Za-z0-9]{1,128}$/;

/** True when a customer is named by a BSUID (else by a phone number / WhatsApp id). */
export const isBsuid = (customer: string): boolean => BSUID_PATTERN.test(customer);

/** What a sender asks for. Plain data: it is the send workflow's input. */
export type SendRequest = {
  /** Unique per message; the send workflow id is derived from it. */
  messageId: string;
  phoneNumberId: string;
  /**
   * The customer: their phone number or WhatsApp id, else their BSUID (`isBsuid`; sent to Meta as
   * `recipient`). Order, the pair limit and the service window key on it.
   */
  to: string;
  /** ISO time after which the message must not be sent. */
  expiresAt?: string;
  /** ISO time the service accepted it. */
  acceptedAt: string;
  /**
   * Sent instead of a free-form message when the customer service window is closed (src/sending/window.ts);
   * without it such a message fails `service_window_closed`.
   */
  fallbackTemplate?: TemplateBody;
  /**
   * The send API recorded the message's document just before starting the run: `admit` reads it
   * instead of first trying to insert it again (a write that could only fail).
   */
  recorded?: true;
  /**
   * With `recorded`: when the send API read the gate open for this message (epoch ms, its clock,
   * taken before the read). `admit`'s first attempt acts on that verdict while it is fresh
   * (`GATE_VERDICT_REUSE_MS`, src/sending/admission.ts) instead of reading the gate again.
   */
  gateOpenAt?: number;
} & MessageContent;

/** Meta's error, as recorded on a failed message. */
export interface MetaErrorInfo {
  code: number;
  subcode?: number;
  message: string;
  /** `error.error_data.details`: Meta's human-readable explanation. */
  details?: string;
  fbtraceId?: string;
  /** Absent for network failures (no answer) and for errors read from status webhooks. */
  httpStatus?: number;
}

/** Final (or current) outcome of a send; the send workflow's result. */
export interface SendOutcome {
  messageId: string;
  status: MessageStatus;
  wamid?: string;
  /** Why it failed, expired or was cancelled: Meta's error or our reason code. */
  reason?: string;
  error?: MetaErrorInfo;
  /** `fallback_template`: the window was closed and the send's `fallbackTemplate` went instead. */
  sentAs?: 'fallback_template';
  at: string;
}

/** Sent by the drain (and the queue's other settlers) to a waiting send workflow. */
export const messageSettledSignal = defineSignal<[SendOutcome]>('messageSettled');

/** A send met Meta's refusal of a token: which token (by source) and the send, for probing. */
export interface TokenRefusal {
  source: string;
  wabaId: string;
  phoneNumberId: string;
  detail: string;
  /** ISO time of the refusal. */
  at: string;
}

/** Told to the token's credentials workflow (signal-with-start) by every send Meta refuses the token of. */
export const tokenRefusedSignal = defineSignal<[TokenRefusal]>('tokenRefused');

/** A server saw a forward target's oldest pending entry wait past FORWARD_BACKLOG_ALERT_AGE. */
export interface ForwardBacklogReport {
  target: string;
  oldestAgeMs: number;
  /** Pending entries the server saw (at least this many). */
  pending: number;
  /** The oldest pending entry's delivery and first WABA. */
  deliveryId?: string;
  wabaId?: string;
}

export const forwardBacklogSignal = defineSignal<[ForwardBacklogReport]>('forwardBacklog');

/** What the worker reads of a target's backlog now, judged by the forwarder's rule, and the alert age it uses. */
export interface ForwardBacklogCheck extends ForwardBacklogReport {
  /** The oldest entry waits past FORWARD_BACKLOG_ALERT_AGE (`backlogTooOld`, the one rule). */
  tooOld: boolean;
  alertAfterMs: number;
}

/** One pass of the gate probe sweep: the WABAs with a probe point in (`fromMs`, `toMs`]. */
export interface GateProbeSweepInput {
  fromMs: number;
  toMs: number;
}

/** What a pass of the sweep did. */
export interface GateProbeSweepResult {
  /** Offboarded WABAs read. */
  offboarded: number;
  /** Of those, probed (a point in the window). */
  probed: number;
  /** Probes that said usable, each reported to the WABA's run. */
  usable: number;
  /** Usable reports no open run took (it ended meanwhile). */
  unreported: number;
}

/** What a probe with a token says: it works, Meta refuses it, or no answer either way. */
export type TokenProbe =
  { works: true; detail: string } | { works: false; detail: string } | { works: undefined; detail: string };
/** Current status of a send workflow's message. */
export const messageStatusQuery = defineQuery<SendOutcome>('messageStatus');

/** Reason codes we put on messages we fail or expire ourselves. */
export const REASONS = {
  reconnectTimeout: 'reconnect_timeout',
  partnerRemoved: 'partner_removed',
  expired: 'expired',
  retriesExhausted: 'retries_exhausted',
  /** A send's answer was lost and IN_DOUBT_POLICY (or the one resend allowed) says not to send again. */
  inDoubt: 'in_doubt',
  /**
   * A free-form message to a customer whose service window is closed (the last message from them
   * is over 24 h old, or Meta answered 131047), sent without a `fallbackTemplate`: not POSTed.
   */
  serviceWindowClosed: 'service_window_closed',
} as const;

/**
 * `ApplicationFailure` types thrown across the workflow boundary, named once (class names do not
 * survive bundling). Activities throw them; workflows and launchers match on them.
 */
export const FAILURE_TYPES = {
  /** The message's phone number is not in the registry: the send fails, never retried. */
  unknownPhoneNumber: 'UnknownPhoneNumber',
  /** A transient Meta error: Temporal retries the attempt (after Meta's wait, when it gave one). */
  metaRetryable: 'MetaRetryable',
  /** No send slot of the number (or recipient) within the attempt's wait: retried after the given delay. */
  paced: 'Paced',
  /** A previous attempt's answer was lost: retried once a status webhook may have confirmed it. */
  inDoubt: 'InDoubt',
  /** This attempt's answer was lost (the message may have gone out): retried, and the ledger decides. */
  answerLost: 'AnswerLost',
  /** No message with that id is recorded. */
  unknownMessage: 'UnknownMessage',
  /** An operator action that does not apply to the WABA's current state. */
  actionRefused: 'ActionRefused',
} as const;

// ---------------------------------------------------------------------------------------------
// Workflow signatures. The launchers (src/*/launch.ts) start workflows by name with these types
// and never import workflow code, so the workflows may import the activities' types (which reach
// the launchers) without an import circle. test/unit/workflow-signatures.test.ts checks that each
// workflow function has its signature.

/** How a run of the lifecycle workflow ended; its result. */
export interface LifecycleRunSummary {
  wabaId: string;
  finalState: WabaState;
  eventsApplied: number;
}

/** Options a sender may set on a send workflow; defaults suit production. */
export interface SendOptions {
  /** Attempts for retryable Meta errors (throttling, 5xx, network) before the message fails. */
  maxAttempts?: number;
  /**
   * The API queued the message when it accepted it (the gate was closed): the run reads its
   * recorded outcome (settled already, or queued) instead of admitting it again, then waits.
   */
  queued?: boolean;
}

/** What a continued credentials run carries over. */
export interface CredentialsCarry {
  /** The pause's alert went out (a continued run does not raise it again). */
  alerted: boolean;
  probes: number;
}

/** What a continued forward-backlog run carries over. */
export interface ForwardBacklogCarry {
  /** The alert went out (a continued run does not raise it again). */
  alerted: boolean;
  checks: number;
}

/** What a continued gate probe sweep carries over: where the next window starts, and the totals so far. */
export interface GateProbeSweepCarry {
  fromMs?: number;
  passes?: number;
  /** Counts since the sweep started (a pass's `offboarded` is a reading, not a count to add up). */
  totals?: Omit<GateProbeSweepResult, 'offboarded'>;
}

export type WabaLifecycleWorkflow = (
  input: LifecycleInput,
  pending?: LifecycleEvent[],
  seen?: string[],
) => Promise<LifecycleRunSummary>;
export type SendMessageWorkflow = (req: SendRequest, options?: SendOptions) => Promise<SendOutcome>;
export type CredentialsWorkflow = (
  first: TokenRefusal,
  carry?: CredentialsCarry,
) => Promise<{ resumedAt: string; probes: number }>;
export type ForwardBacklogWorkflow = (
  first: ForwardBacklogReport,
  carry?: ForwardBacklogCarry,
) => Promise<{ clearedAt: string; checks: number; alerted: boolean }>;
export type GateProbeSweepWorkflow = (carry?: GateProbeSweepCarry) => Promise<never>;

// ---- Activity inputs and results: plain data shared by workflows and activities ----

/** An operator alert, as the lifecycle workflow raises it. Plain data. */
export interface AlertInput {
  wabaId: string;
  /**
   * What happened. Incident sinks open or update the WABA's incident on every kind but
   * `reconnected`, which resolves it.
   */
  kind: string;
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
