import { setMaxListeners } from 'node:events';
import { Context } from '@temporalio/activity';
import type { Config } from '../config';
import type { GraphClient } from '../adapters/graph/client';
import { sendWithLedger } from './ledger';
import { decideSendOutcome } from './outcome';
import type { Logger } from '../logger';
import type { Collections, QueueDoc } from '../adapters/store/db';
import { createPhoneNumberLookup } from '../lifecycle/phone-numbers.store';
import {
  advanceHead,
  findSettlement,
  nextEntries,
  outcomeOfSettlement,
  recordSettlements,
  removeEntries,
  type QueueCursor,
  type QueueMarks,
  type Settlement,
} from './queue.store';
import type { LaunchDeps } from '../launch-deps';
import { notifySettled } from './launch';
import { pauseForRefusedToken } from '../lifecycle/credentials';
import { emitServiceEvents, messageEventsOf } from '../relay/events';
import type { ForwardTarget } from '../relay/targets';
import { realClock, type Reservation, type SharedPacer } from './pacing';
import { REASONS, type SendOutcome } from '../contracts';
import type { DrainInput, DrainResult, FailQueueInput } from '../contracts';

export interface DrainDeps {
  c: Collections;
  graph: GraphClient;
  pacer: SharedPacer;
  launch: LaunchDeps;
  config: Config;
  logger: Logger;
  /** Tuning; defaults suit production. */
  tuning?: Partial<DrainTuning>;
}

export interface DrainTuning {
  /** Queue entries read per page. */
  pageSize: number;
  /** Sends started and not yet answered, at most (also bounds memory). */
  maxInFlight: number;
  /** Settlements are written when this many are waiting, or after `flushMs`. */
  flushSize: number;
  flushMs: number;
  /**
   * Sends whose settlement is not yet written, at most: past it, sending waits for the database.
   * With `maxInFlight` it bounds what a crash can send twice, whatever the database's speed.
   */
  maxUnpersisted: number;
  /** Attempts per message for retryable errors before it fails. */
  maxAttempts: number;
  /** Concurrent settle signals to waiting send workflows. */
  notifyConcurrency: number;
}

const DEFAULT_TUNING: DrainTuning = {
  pageSize: 500,
  maxInFlight: 256,
  flushSize: 200,
  flushMs: 250,
  maxUnpersisted: 400,
  maxAttempts: 8,
  notifyConcurrency: 8,
};

/** How far ahead of the sends' preparation (`SharedPacer.prepare`) the dispatch loop reserves start slots. */
const LOOKAHEAD_MS = 200;
/** How long the dispatch loop waits for a recipient's previous message to settle before moving on. */
const RECIPIENT_WAIT_MS = 500;

/** True if `p` settles within `ms`. */
async function settledWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([p.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

interface Progress {
  sent: number;
  failed: number;
  expired: number;
  alreadySettled: number;
}

/**
 * Tells waiting send workflows their messages' outcomes, `concurrency` signals at a time, and
 * resolves once every one was accepted by Temporal (or its workflow is not running: not started
 * yet, and its start reads the outcome, or already ended). The callers signal BEFORE they write the
 * settlements: a signal Temporal accepted is durable, so a worker that dies after it loses nothing
 * (the retried activity settles the same messages again from the attempt ledger), while one sent
 * after the write would be lost with the worker, and the send workflows keep no timer to look again
 * (no history while they wait). A signal Temporal keeps refusing fails the flush: the messages stay
 * queued and the activity's retry sends the signals again.
 */
async function signalOutcomes(
  launch: LaunchDeps,
  outcomes: SendOutcome[],
  concurrency: number,
  logger: Logger,
): Promise<void> {
  let next = 0;
  const one = (outcome: SendOutcome): Promise<void> =>
    withRetries(
      () => notifySettled(launch, outcome),
      logger.child({ messageId: outcome.messageId }),
      'settle signal refused',
    );
  const lane = async (): Promise<void> => {
    while (next < outcomes.length) await one(outcomes[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, outcomes.length) }, lane));
}

/**
 * Writes settlements, retrying a few times: losing them would resend messages on resume. Their
 * `message.*` service events first (idempotent ids), for the targets that want them.
 */
async function persist(
  c: Collections,
  batch: Settlement[],
  logger: Logger,
  tell: { wabaId: string; targets: readonly ForwardTarget[] },
): Promise<void> {
  await withRetries(
    async () => {
      await emitServiceEvents(c, tell.targets, messageEventsOf(tell.wabaId, batch));
      await recordSettlements(c, batch);
    },
    logger,
    'writing settlements failed',
  );
}

/** Runs `fn`, retrying it 4 times (0.4, 0.8, 1.6, 3.2 s apart) and logging each retry; rethrows the last error. */
async function withRetries(fn: () => Promise<void>, logger: Logger, failed: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (attempt >= 5) throw err;
      logger.warn({ err: String(err), attempt }, `${failed}; retrying`);
      await realClock.sleep(200 * 2 ** attempt);
    }
  }
}

export function createDrainActivities(deps: DrainDeps) {
  const { c, graph, pacer, config } = deps;
  const tuning: DrainTuning = { ...DEFAULT_TUNING, ...deps.tuning };
  // DRAIN_ORDER=waba: each message leaves only once the one before it in the queue is answered
  // (its retries and in-doubt wait included), so the receiver sees the queue's order exactly.
  const maxInFlight = deps.config.sending.drainOrder === 'waba' ? 1 : tuning.maxInFlight;

  return {
    /**
     * Sends a WABA's queued messages in sequence order, paced under each number's cap and the
     * per-recipient pair limit, until the queue is empty, Meta says the account is unusable
     * (`stopped`; the rest stays queued), or the workflow cancels it.
     *
     * Order: requests leave in sequence order, except that a recipient's message waits for that
     * recipient's previous one (so a retried message is never overtaken by a later one to the
     * same person, while other recipients go on).
     *
     * Durability: settlements are written in batches, then the entries are removed; heartbeats
     * report progress. Every POST goes through the attempt ledger (src/sending/ledger.ts): if the
     * worker dies, the retried activity settles without a POST the messages whose answer was
     * recorded, and the POSTs that were in flight at the crash are in doubt (confirmed by a status
     * webhook, else `IN_DOUBT_POLICY`: one resend or fail). Pacing is shared with every worker
     * (src/sending/pacing.ts).
     */
    async drainQueue(input: DrainInput): Promise<DrainResult> {
      const ctx = Context.current();
      const { wabaId } = input;
      const log = deps.logger.child({ wabaId, activity: 'drainQueue', attempt: ctx.info.attempt });
      const signal = ctx.cancellationSignal;
      // Every paced send waits on this signal: many listeners at once are expected here.
      setMaxListeners(0, signal);
      const resumed = ctx.info.attempt > 1;
      const progress: Progress = {
        sent: 0,
        failed: 0,
        expired: 0,
        alreadySettled: 0,
        ...(ctx.info.heartbeatDetails as Partial<Progress> | undefined),
      };
      // Each entry's number by its id (cached for seconds): no read of the registry by WABA, which scans on FerretDB.
      const lookupNumber = createPhoneNumberLookup(c);

      let stop: string | undefined;
      let stoppedBy: NonNullable<DrainResult['stopped']> = 'account_unusable';
      let refusal: { wabaId: string; phoneNumberId: string; detail: string } | undefined;
      let pending: Settlement[] = [];
      /** Settled but not yet written (pending + the batch being written). */
      let unpersisted = 0;
      let flushing: Promise<void> = Promise.resolve();
      let flushTimer: NodeJS.Timeout | undefined;
      const inFlight = new Set<Promise<void>>();
      /** Entries this drain removed: `advanceHead` passes them without reading them again. */
      const removed = new Set<string>();
      const recipientTail = new Map<string, Promise<void>>();
      /** Set when settlements could not be written (after `persist`'s retries): nothing more is sent. */
      let unwritable = false;
      /**
       * The first send that threw (the store or the worker failed under it, not an answer of Meta's):
       * nothing more is sent, and this attempt fails once the others are settled. Its recipient's
       * later messages are never sent before it: they see `halted` before they start, and the
       * retried attempt walks the queue from the head again (the ledger knows what left).
       */
      let broken: { err: unknown } | undefined;
      const halted = (): boolean => stop !== undefined || signal.aborted || unwritable || broken !== undefined;
      const sendFailed = (err: unknown): void => {
        if (!broken) log.warn({ err: String(err) }, 'a send failed; stopping the drain, its retry resumes');
        broken ??= { err };
      };

      function flush(): Promise<void> {
        if (flushTimer) clearTimeout(flushTimer);
        flushTimer = undefined;
        const batch = pending;
        pending = [];
        flushing = flushing.then(async () => {
          const told = batch.filter((s) => s.notify !== false).map(outcomeOfSettlement);
          await signalOutcomes(deps.launch, told, tuning.notifyConcurrency, log);
          if (batch.length > 0) await persist(c, batch, log, { wabaId, targets: config.forward.targets });
          for (const b of batch) if (b.queueId) removed.add(b.queueId);
          unpersisted -= batch.length;
          ctx.heartbeat(progress);
        });
        return flushing;
      }

      /**
       * A flush nobody awaits (size or timer): if the write fails for good, the drain stops sending
       * and the final flush rethrows it, failing this attempt (the retried one resumes: answers
       * already received are in the ledger, so they are settled without a POST).
       */
      function flushInBackground(): void {
        flush().catch((err: unknown) => {
          if (!unwritable) log.warn({ err: String(err) }, 'settlements not written; stopping the drain');
          unwritable = true;
        });
      }

      function settle(s: Settlement): void {
        if (s.status === 'sent') progress.sent++;
        else if (s.status === 'expired') progress.expired++;
        else progress.failed++;
        pending.push(s);
        unpersisted++;
        if (pending.length >= tuning.flushSize) flushInBackground();
        else flushTimer ??= setTimeout(flushInBackground, tuning.flushMs);
      }

      const mpsOf = async (entry: QueueDoc) =>
        (await lookupNumber(entry.phoneNumberId))?.mps ?? config.sending.defaultMps;
      /** Claims the entry's next start (shared with every worker's sends of the number). */
      const reserve = async (entry: QueueDoc): Promise<Reservation> => {
        const mps = await mpsOf(entry);
        const got = await pacer.reserve({ phoneNumberId: entry.phoneNumberId, mps, to: entry.to });
        if (got.kind !== 'reserved') throw new Error('a reservation without a wait limit was refused'); // never: no maxWaitMs
        return got.reservation;
      };

      /**
       * Sends one entry. `first` is the start the dispatch loop reserved for its first attempt
       * (reserved in sequence order, so requests leave in that order); retries reserve new ones.
       * What each answer means is the send-outcome policy's (src/sending/outcome.ts); this carries it out.
       */
      async function sendOne(entry: QueueDoc, first: Reservation): Promise<void> {
        const base = {
          messageId: entry.messageId,
          queueId: entry._id,
          notify: entry.notify,
          ...(entry.round ? { round: entry.round } : {}),
        };
        let reserved: Reservation | undefined = first;
        for (let attempt = 1; ;) {
          const slot: Reservation = reserved ?? (await reserve(entry));
          reserved = undefined;
          // The ledger records the POST just before the slot (a crash in between may leave an
          // unsent message in doubt); the POST itself then leaves at the slot's start.
          await pacer.prepare(slot, signal);
          if (halted()) return slot.done();
          if (entry.expiresAt && Date.parse(entry.expiresAt) <= Date.now()) {
            slot.done();
            return settle({ ...base, status: 'expired', reason: REASONS.expired, at: new Date().toISOString() });
          }
          const result = await sendWithLedger(
            c,
            graph,
            {
              wabaId,
              messageId: entry.messageId,
              ...(entry.round ? { round: entry.round } : {}),
              phoneNumberId: entry.phoneNumberId,
              to: entry.to,
              content: entry.content,
              fallbackTemplate: entry.fallbackTemplate,
            },
            {
              policy: config.sending.inDoubt,
              logger: log,
              depart: async () => (await pacer.depart(slot, signal)) && !halted(),
              targets: config.forward.targets,
            },
          );
          slot.done(); // the slot was used, or will not be: the next send of the number may go
          const decision = decideSendOutcome(result, {
            sender: 'drain',
            attempt,
            maxAttempts: tuning.maxAttempts,
            inDoubtGraceMs: config.sending.inDoubt.graceMs,
          });
          if (decision.pacer?.kind === 'pause_number') await pacer.pause(entry.phoneNumberId, decision.pacer.ms);
          else if (decision.pacer?.kind === 'pause_recipient')
            await pacer.penalize(entry.phoneNumberId, entry.to, decision.pacer.ms);
          // The gate is closed by the lifecycle workflow on the drain's result (`stopped`).
          if (decision.gate) stop ??= decision.gate.detail;
          // A refused token: the rest waits for it (src/lifecycle/credentials.ts), the gate stays as it is.
          if (decision.token && stop === undefined) {
            stop = decision.token.detail;
            stoppedBy = 'credentials';
            refusal = { wabaId, phoneNumberId: entry.phoneNumberId, detail: decision.token.detail };
          }
          const { message } = decision;
          const at = new Date().toISOString();
          switch (message.kind) {
            case 'sent': {
              const { wamid, attempts, sentAs } = message;
              return settle({ ...base, status: 'sent', wamid, at, attempts, ...(sentAs && { sentAs }) });
            }
            case 'failed': {
              const { reason, error, attempts } = message;
              return settle({ ...base, status: 'failed', reason, ...(error && { error }), at, attempts });
            }
            case 'stays_queued':
              return;
            case 'retry':
              // A stopped drain sends nothing more: the message stays queued. Else the wait (a send
              // in doubt: this recipient's later messages wait too, the others go on), then a new slot.
              if (halted()) return;
              await realClock.sleep(message.afterMs, signal);
              if (halted()) return;
              if (message.counted) attempt++;
          }
        }
      }

      /** Entries an interrupted attempt already settled: remove them without sending. */
      async function dropSettled(page: QueueDoc[]): Promise<QueueDoc[]> {
        const settled = await Promise.all(page.map((e) => findSettlement(c, e.messageId, e.round)));
        const keep = page.filter((_, i) => !settled[i]);
        const done = page.filter((_, i) => settled[i]).map((e) => e._id);
        await removeEntries(c, done);
        for (const id of done) removed.add(id);
        progress.alreadySettled += done.length;
        return keep;
      }

      log.info({ mode: input.mode, resumed }, 'drain started');
      const heartbeatTimer = setInterval(() => ctx.heartbeat(progress), 5_000);
      let checkedForResume = 0;
      // The next page is read while this one is sent (a point read per entry).
      type Page = Awaited<ReturnType<typeof nextEntries>>;
      let nextPage: Promise<Page> | undefined = nextEntries(c, wabaId, undefined, tuning.pageSize);
      /** The marks the last page read: `advanceHead` starts from them. */
      let marks: QueueMarks | undefined;
      try {
        while (!halted() && nextPage) {
          const read: Page = await nextPage;
          marks = read.marks;
          let page = read.entries;
          if (page.length === 0) break;
          // A page that reached the queue's end is the last: reading on (at once, as the next page
          // is read) would only find entries queued in the moment since. Those, and any queued while
          // this page is sent, are the lifecycle run's: it looks at the queue after saving the
          // drain's outcome and drains them as strays (src/lifecycle/machine.ts, `finishDrain`).
          nextPage = read.end ? undefined : nextEntries(c, wabaId, read.cursor, tuning.pageSize);
          nextPage?.catch(() => undefined); // awaited on the next turn; not left unhandled if we stop
          if (resumed && checkedForResume < tuning.maxInFlight + tuning.maxUnpersisted) {
            checkedForResume += page.length;
            page = await dropSettled(page);
          }
          for (const entry of page) {
            if (halted()) break;
            // A recipient's message is reserved only once the previous one to that recipient is
            // settled (sent or failed, its retries included: a 130429 retried after the next one
            // left would arrive out of order): briefly waited for here (sequence order kept), else
            // by its own task (a slow predecessor, e.g. in doubt, holds back only its recipient).
            const previous = recipientTail.get(entry.to);
            const ready = previous === undefined || (await settledWithin(previous, RECIPIENT_WAIT_MS));
            let markSettled!: () => void;
            const settled = new Promise<void>((resolve) => (markSettled = resolve));
            let task: Promise<void>;
            if (ready) {
              // Reserve this entry's start slot now, in sequence order, but stay at most
              // `LOOKAHEAD_MS` ahead of the sends' preparation (a stopped drain then wastes little
              // of the cap).
              const slot = await reserve(entry);
              await pacer.sleepUntil(slot.at - pacer.leadMs() - LOOKAHEAD_MS, signal);
              task = (halted() ? Promise.resolve() : sendOne(entry, slot)).catch(sendFailed).finally(markSettled);
            } else {
              task = previous
                .then(async () => (halted() ? undefined : sendOne(entry, await reserve(entry))))
                .catch(sendFailed)
                .finally(markSettled);
            }
            recipientTail.set(entry.to, settled);
            inFlight.add(task);
            void task.finally(() => {
              inFlight.delete(task);
              if (recipientTail.get(entry.to) === settled) recipientTail.delete(entry.to);
            });
            while (inFlight.size >= maxInFlight) await Promise.race(inFlight);
            while (unpersisted >= tuning.maxUnpersisted) await flush(); // the database sets the pace
          }
        }
        await Promise.all(inFlight);
      } finally {
        clearInterval(heartbeatTimer);
        await Promise.allSettled(inFlight);
        await flush();
      }
      // Later walks start past what this drain sent (best effort: a failure only costs them reads).
      await advanceHead(c, wabaId, removed, marks).catch((err: unknown) =>
        log.warn({ err: String(err) }, 'queue head not advanced'),
      );
      if (signal.aborted) {
        log.info(progress, 'drain cancelled');
        await ctx.cancelled; // throws the cancellation, so the workflow sees it as such
      }
      if (broken) throw broken.err; // Temporal retries the drain; it resumes from the ledger
      if (refusal) {
        await pauseForRefusedToken({ c, launch: deps.launch, graph: config.graph, logger: log }, refusal);
      }
      log.info({ ...progress, stopped: stop }, 'drain finished');
      return { ...progress, ...(stop ? { stopped: stoppedBy, detail: stop } : {}) };
    },

    /**
     * Fails every message in a WABA's queue with `reason` (partner removed, reconnection
     * abandoned) and tells their send workflows. Returns how many it failed. Safe to retry.
     */
    async failQueue(input: FailQueueInput): Promise<number> {
      const ctx = Context.current();
      let failed = 0;
      let cursor: QueueCursor | undefined;
      let marks: QueueMarks | undefined;
      const removed = new Set<string>();
      for (;;) {
        const read = await nextEntries(c, input.wabaId, cursor, tuning.pageSize);
        const page = read.entries;
        cursor = read.cursor;
        marks = read.marks;
        if (page.length === 0) break;
        const at = new Date().toISOString();
        const batch: Settlement[] = page.map((e) => ({
          messageId: e.messageId,
          queueId: e._id,
          status: 'failed',
          reason: input.reason,
          at,
          ...(e.round ? { round: e.round } : {}),
        }));
        const told = batch.filter((_, i) => page[i]!.notify).map(outcomeOfSettlement);
        await signalOutcomes(deps.launch, told, tuning.notifyConcurrency, deps.logger);
        await persist(c, batch, deps.logger, { wabaId: input.wabaId, targets: config.forward.targets });
        for (const e of page) removed.add(e._id);
        failed += batch.length;
        ctx.heartbeat(failed);
      }
      await advanceHead(c, input.wabaId, removed, marks);
      deps.logger.info({ wabaId: input.wabaId, failed, reason: input.reason }, 'queue failed');
      return failed;
    },
  };
}
