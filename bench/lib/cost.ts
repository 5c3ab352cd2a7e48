/**
 * What an operation costs, counted (not timed): the Temporal history events it adds across every
 * workflow run of a task queue, and the MongoDB commands the service's client sends (write
 * statements, reads, other). Counts are the same on any machine. Used by `bench/cost.ts`; an
 * integration test can hold one budget with `createCostMeter(...).measure(fn)`.
 *
 * How each unit is counted:
 * - **history events**: every run on the task queue is listed (visibility) and its `historyLength`
 *   read with `describe()` (the server's own count, also for runs still open); an operation's events
 *   are the sum of the growth over all runs, new runs counted from 0 (continue-as-new runs included).
 *   The breakdown reads the new events themselves (`fetchHistory`) and labels them by workflow type,
 *   event type and the activity, signal, timer-less marker or patch they name.
 * - **write statements** (driver command monitoring, `commandStarted`): each document of an `insert`
 *   (`documents`), each statement of an `update` (`updates`) or `delete` (`deletes`), and each
 *   `findAndModify`, as sent: an `insertMany` of 5 is 5 statements (MongoDB writes each document to
 *   its oplog; FerretDB v1.24.2 inserts up to 100 documents of one command in one SQLite
 *   transaction, `msg_insert.go` and the SQLite backend's `InsertAll`, so its one writer commits
 *   once for them); a statement the server then refuses (a duplicate key) still counts.
 * - **reads**: each `find`, `aggregate`, `count`, `distinct` and `getMore` command.
 * - **other**: every other command (ping, createIndexes, killCursors, endSessions, …), reported
 *   apart and not budgeted.
 * - **sources**: each command is attributed to the activity that sent it (`activity admit`,
 *   `local activity …`) or to `service` (HTTP handlers, the outbox relay, the forwarder), so that a
 *   background loop's commands (the gate probe sweep's activity) can be counted apart.
 */
import type { CommandStartedEvent, MongoClient } from 'mongodb';
import type { Client } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { asyncLocalStorage as activityContext } from '@temporalio/activity';
import { enableCommandMonitoring } from './report';

// ---------------------------------------------------------------------------------------------
// Database commands

/** The array of statements in each write command (`findAndModify` is one statement). */
const STATEMENT_ARRAYS: Record<string, string> = {
  insert: 'documents',
  update: 'updates',
  delete: 'deletes',
  bulkWrite: 'ops',
};
const READ_COMMANDS = new Set(['find', 'aggregate', 'count', 'distinct', 'getMore']);

export type CommandKind = 'write' | 'read' | 'other';

/** What one command started event counts as: its kind, statements and a `command collection` key. */
export function classifyCommand(e: Pick<CommandStartedEvent, 'commandName' | 'command'>): {
  kind: CommandKind;
  statements: number;
  key: string;
} {
  const name = e.commandName;
  const target = name === 'getMore' ? e.command.collection : e.command[name];
  const key = typeof target === 'string' ? `${name} ${target}` : name;
  const array = STATEMENT_ARRAYS[name];
  if (array !== undefined) {
    const list: unknown = e.command[array];
    return { kind: 'write', statements: Array.isArray(list) ? list.length : 1, key };
  }
  if (name === 'findAndModify') return { kind: 'write', statements: 1, key };
  return { kind: READ_COMMANDS.has(name) ? 'read' : 'other', statements: 1, key };
}

/** Write statements, reads and other commands, in total and by `command collection`. */
export interface DbCounts {
  writes: number;
  reads: number;
  other: number;
  /** Statements (writes) or commands (reads, other) per `command collection`. */
  byKey: Record<string, number>;
}

/**
 * Counts per source: `activity <type>` or `local activity <type>` for a command an activity sent
 * (read from the activity context the SDK keeps in an AsyncLocalStorage, which the driver's
 * `commandStarted` event still sees), `service` for everything else (HTTP handlers, the outbox
 * relay, the forwarder).
 */
export type DbCountsBySource = Record<string, DbCounts>;

const emptyCounts = (): DbCounts => ({ writes: 0, reads: 0, other: 0, byKey: {} });

/** The sum of several counts. */
export function sumCounts(list: readonly DbCounts[]): DbCounts {
  const out = emptyCounts();
  for (const c of list) {
    out.writes += c.writes;
    out.reads += c.reads;
    out.other += c.other;
    for (const [k, n] of Object.entries(c.byKey)) out.byKey[k] = (out.byKey[k] ?? 0) + n;
  }
  return out;
}

/** `after − before` per source, keys and sources that did not move left out. */
export function dbDelta(before: DbCountsBySource, after: DbCountsBySource): DbCountsBySource {
  const out: DbCountsBySource = {};
  for (const [source, a] of Object.entries(after)) {
    const b = before[source] ?? emptyCounts();
    const byKey: Record<string, number> = {};
    for (const [k, n] of Object.entries(a.byKey)) if (n !== (b.byKey[k] ?? 0)) byKey[k] = n - (b.byKey[k] ?? 0);
    if (Object.keys(byKey).length > 0)
      out[source] = { writes: a.writes - b.writes, reads: a.reads - b.reads, other: a.other - b.other, byKey };
  }
  return out;
}

/** Running totals of the commands a MongoClient sends, from the moment `countCommands` returns. */
export interface CommandCounter {
  /** A copy of the totals so far, per source. */
  counts(): DbCountsBySource;
  /** Stops counting. */
  stop(): void;
}

/** The activity (if any) whose code sent the command being started. */
function commandSource(): string {
  const info = (activityContext.getStore() as { info?: { activityType: string; isLocal: boolean } } | undefined)?.info;
  return info ? `${info.isLocal ? 'local activity' : 'activity'} ${info.activityType}` : 'service';
}

/**
 * Counts every command `client` sends (the service's client: its worker, app, relay and forwarder
 * share it), per source. Turns command monitoring on (a reconnect, see `enableCommandMonitoring`).
 */
export async function countCommands(client: MongoClient): Promise<CommandCounter> {
  await enableCommandMonitoring(client);
  const totals: DbCountsBySource = {};
  const onStart = (e: CommandStartedEvent): void => {
    const { kind, statements, key } = classifyCommand(e);
    const t = (totals[commandSource()] ??= emptyCounts());
    if (kind === 'write') t.writes += statements;
    else if (kind === 'read') t.reads += 1;
    else t.other += 1;
    t.byKey[key] = (t.byKey[key] ?? 0) + statements;
  };
  client.on('commandStarted', onStart);
  return {
    counts: () => Object.fromEntries(Object.entries(totals).map(([s, t]) => [s, { ...t, byKey: { ...t.byKey } }])),
    stop: () => void client.off('commandStarted', onStart),
  };
}

// ---------------------------------------------------------------------------------------------
// Temporal history

export interface RunInfo {
  workflowId: string;
  runId: string;
  type: string;
  /** History events so far. */
  length: number;
  closed: boolean;
}

/** Every run of a task queue and its history length, keyed `workflowId/runId`. */
export type HistorySnapshot = Map<string, RunInfo>;

/**
 * Lists every run on `taskQueue` and reads each open run's `historyLength` with `describe()` (a
 * closed run's length is final: taken from `known` when it was closed there already).
 */
export async function historySnapshot(
  client: Client,
  taskQueue: string,
  known?: HistorySnapshot,
): Promise<HistorySnapshot> {
  const out: HistorySnapshot = new Map();
  const listed: { workflowId: string; runId: string; type: string }[] = [];
  for await (const w of client.workflow.list({ query: `TaskQueue = '${taskQueue}'` })) {
    listed.push({ workflowId: w.workflowId, runId: w.runId, type: w.type });
  }
  await Promise.all(
    listed.map(async (w) => {
      const key = `${w.workflowId}/${w.runId}`;
      const before = known?.get(key);
      if (before?.closed) return void out.set(key, before);
      const d = await client.workflow.getHandle(w.workflowId, w.runId).describe();
      out.set(key, { ...w, length: d.historyLength, closed: d.status.name !== 'RUNNING' });
    }),
  );
  return out;
}

/** Sum of history events over the snapshot's runs. */
export const totalEvents = (s: HistorySnapshot): number => [...s.values()].reduce((n, r) => n + r.length, 0);

/** The history events added between two snapshots, in total, per run and by label. */
export interface HistoryDelta {
  events: number;
  /** Runs that grew: workflow type, ids, events added. */
  runs: { type: string; workflowId: string; runId: string; events: number }[];
  /** Events by `<workflow type> <EventType>(<activity | signal | marker>)`. */
  byLabel: Record<string, number>;
}

const EVENT_TYPE_NAMES = temporal.api.enums.v1.EventType as unknown as Record<number, string>;

/** `EVENT_TYPE_ACTIVITY_TASK_SCHEDULED` → `ActivityTaskScheduled`, plus what it names. */
function eventLabel(e: temporal.api.history.v1.IHistoryEvent): string {
  const raw = EVENT_TYPE_NAMES[Number(e.eventType)] ?? `EventType${String(e.eventType)}`;
  const name = raw
    .replace(/^EVENT_TYPE_/, '')
    .toLowerCase()
    .replace(/(^|_)([a-z])/g, (_m, _s: string, c: string) => c.toUpperCase());
  const detail =
    e.activityTaskScheduledEventAttributes?.activityType?.name ??
    e.workflowExecutionSignaledEventAttributes?.signalName ??
    e.signalExternalWorkflowExecutionInitiatedEventAttributes?.signalName ??
    e.markerRecordedEventAttributes?.markerName ??
    e.startChildWorkflowExecutionInitiatedEventAttributes?.workflowType?.name ??
    undefined;
  return detail ? `${name}(${detail})` : name;
}

/** Events added between `before` and `after`, read from the histories of the runs that grew. */
export async function historyDelta(
  client: Client,
  before: HistorySnapshot,
  after: HistorySnapshot,
): Promise<HistoryDelta> {
  const delta: HistoryDelta = { events: 0, runs: [], byLabel: {} };
  const grown = [...after].filter(([key, run]) => run.length > (before.get(key)?.length ?? 0));
  await Promise.all(
    grown.map(async ([key, run]) => {
      const from = before.get(key)?.length ?? 0;
      const history = await client.workflow.getHandle(run.workflowId, run.runId).fetchHistory();
      // Only the events up to the snapshot: the run may have gone on since.
      const added = (history.events ?? []).filter((e) => {
        const id = Number(e.eventId);
        return id > from && id <= run.length;
      });
      delta.events += run.length - from;
      delta.runs.push({ type: run.type, workflowId: run.workflowId, runId: run.runId, events: run.length - from });
      for (const e of added) {
        const label = `${run.type} ${eventLabel(e)}`;
        delta.byLabel[label] = (delta.byLabel[label] ?? 0) + 1;
      }
    }),
  );
  delta.runs.sort((a, b) => a.workflowId.localeCompare(b.workflowId));
  return delta;
}

// ---------------------------------------------------------------------------------------------
// Measuring an operation

/** Workflow types and DB sources that run on their own schedule, counted apart from operations. */
export interface Background {
  /** Workflow types (e.g. the gate probe sweep). */
  workflowTypes?: readonly string[];
  /** DB sources (`activity <type>`, `service`; see `DbCountsBySource`). */
  sources?: readonly string[];
}

/** The cost of one measured operation; what background loops did in the same window apart. */
export interface Cost {
  history: HistoryDelta;
  /** The operation's commands (background sources left out). */
  db: DbCounts;
  /** The same per source. */
  dbBySource: DbCountsBySource;
  background: { history: HistoryDelta; db: DbCounts };
}

export interface CostMeterOptions {
  temporal: Client;
  taskQueue: string;
  /** The service's MongoClient (every process-local writer and reader shares it). */
  mongo: MongoClient;
  background?: Background;
  /** Extra idleness the stack must reach before a snapshot (e.g. the outbox relay holds nothing). */
  idle?: () => Promise<void>;
  /** The stack is idle once nothing moved for this long. Default 1,500 ms, looked at every 250 ms. */
  settleMs?: number;
  /** Give up waiting for idleness after this long. Default 120 s. */
  timeoutMs?: number;
}

/** What a meter reads at one moment. */
export interface CostSnapshot {
  history: HistorySnapshot;
  db: DbCountsBySource;
}

/** Measures operations one at a time on a quiet stack (see `createCostMeter`). */
export interface CostMeter {
  /**
   * Waits until the stack is idle, snapshots, runs `fn`, waits until idle again, snapshots: the
   * difference is `fn`'s cost, including the work it set off in workflows, activities and the relay.
   */
  measure(fn: () => Promise<void>): Promise<Cost>;
  /** Waits until, for `settleMs`, no operation run's history grew and no write statement was sent. */
  quiesce(): Promise<void>;
  /** Reads the counts now (for windows that cannot be made quiet, e.g. polls). */
  snapshot(): Promise<CostSnapshot>;
  /** The cost between two snapshots. */
  between(a: CostSnapshot, b: CostSnapshot): Promise<Cost>;
  stop(): void;
}

/** Splits a history snapshot into operation runs and background runs. */
function splitRuns(s: HistorySnapshot, types: readonly string[]): [HistorySnapshot, HistorySnapshot] {
  const op: HistorySnapshot = new Map();
  const bg: HistorySnapshot = new Map();
  for (const [k, r] of s) (types.includes(r.type) ? bg : op).set(k, r);
  return [op, bg];
}

/**
 * A meter over one service: its task queue's workflow runs and its MongoClient's commands.
 * "Idle" means: `idle()` resolved, and for `settleMs` no operation run's history grew and no write
 * statement was sent outside the background. Reads are not part of it, so a polling loop (the
 * outbox sweep, the forwarder) does not keep the stack from being idle; its reads inside a window
 * are counted with the operation (source `service`) unless its source is background.
 */
export async function createCostMeter(opts: CostMeterOptions): Promise<CostMeter> {
  const settleMs = opts.settleMs ?? 1_500;
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const bgTypes = opts.background?.workflowTypes ?? [];
  const bgSources = opts.background?.sources ?? [];
  const counter = await countCommands(opts.mongo);
  let known: HistorySnapshot = new Map();
  const snapshot = async (): Promise<CostSnapshot> => {
    const db = counter.counts();
    known = await historySnapshot(opts.temporal, opts.taskQueue, known);
    return { history: known, db };
  };
  const opWrites = (db: DbCountsBySource): number =>
    Object.entries(db).reduce((n, [source, c]) => n + (bgSources.includes(source) ? 0 : c.writes), 0);
  const fingerprint = (s: CostSnapshot): string => {
    const [op] = splitRuns(s.history, bgTypes);
    return `${totalEvents(op)}:${op.size}:${opWrites(s.db)}`;
  };

  async function quiesce(): Promise<void> {
    const t0 = Date.now();
    await opts.idle?.();
    let last = fingerprint(await snapshot());
    let stableSince = Date.now();
    while (Date.now() - stableSince < settleMs) {
      if (Date.now() - t0 > timeoutMs) throw new Error(`the stack did not go idle within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 250));
      await opts.idle?.();
      const now = fingerprint(await snapshot());
      if (now !== last) {
        last = now;
        stableSince = Date.now();
      }
    }
  }

  const between: CostMeter['between'] = async (a, b) => {
    const [opA, bgA] = splitRuns(a.history, bgTypes);
    const [opB, bgB] = splitRuns(b.history, bgTypes);
    const dbBySource = dbDelta(a.db, b.db);
    const part = (background: boolean): DbCounts =>
      sumCounts(
        Object.entries(dbBySource)
          .filter(([s]) => bgSources.includes(s) === background)
          .map(([, c]) => c),
      );
    return {
      history: await historyDelta(opts.temporal, opA, opB),
      db: part(false),
      dbBySource,
      background: { history: await historyDelta(opts.temporal, bgA, bgB), db: part(true) },
    };
  };

  return {
    quiesce,
    snapshot,
    between,
    async measure(fn) {
      await quiesce();
      const before = await snapshot();
      await fn();
      await quiesce();
      return between(before, await snapshot());
    },
    stop: () => counter.stop(),
  };
}
