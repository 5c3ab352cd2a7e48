import type { GraphClient } from '../../src/adapters/graph/client';
import { GraphApiError, NETWORK_ERROR_CODE, UNEXPECTED_RESPONSE_CODE } from '../../src/adapters/graph/errors';
import { attemptSend, type Attempt } from '../../src/sending/attempt';
import type { LedgeredAttempt } from '../../src/sending/ledger';
import {
  IN_DOUBT_RECHECK_MS,
  decideSendOutcome,
  type OutcomeContext,
  type SendDecision,
} from '../../src/sending/outcome';

/**
 * The send-outcome policy (src/sending/outcome.ts), row by row: Meta's answers go through the real
 * classification (src/adapters/graph/errors.ts → src/sending/attempt.ts) before the policy sees them.
 */

const GRACE_MS = 15_000;
const direct = (attempt = 1): OutcomeContext => ({ sender: 'direct', attempt, inDoubtGraceMs: GRACE_MS });
const drain = (attempt = 1, maxAttempts = 8): OutcomeContext => ({
  sender: 'drain',
  attempt,
  maxAttempts,
  inDoubtGraceMs: GRACE_MS,
});

/** What `attemptSend` makes of Meta's (or the network's) answer. */
async function answer(err: GraphApiError): Promise<Attempt> {
  const graph = { sendMessage: () => Promise.reject(err) } as unknown as GraphClient;
  return attemptSend(graph, {
    wabaId: 'w',
    phoneNumberId: '1',
    to: '2',
    messageId: 'm',
    content: { type: 'text', text: { body: 'x' } },
  });
}
const meta = (code: number, extra: { subcode?: number; httpStatus?: number; mayHaveBeenSent?: boolean } = {}) =>
  answer(new GraphApiError({ code, message: `meta ${code}`, httpStatus: 400, ...extra }));

/** Both senders decide the same (a direct send has no attempt budget of its own). */
function both(a: LedgeredAttempt, attempt = 1): SendDecision {
  const d = decideSendOutcome(a, direct(attempt));
  expect(decideSendOutcome(a, { ...drain(attempt), maxAttempts: undefined })).toEqual(d);
  return d;
}

describe('send-outcome policy: accepted', () => {
  it('a wamid settles the message sent, counting this attempt', () => {
    expect(both({ kind: 'sent', wamid: 'wamid.A' }, 3)).toEqual({
      message: { kind: 'sent', wamid: 'wamid.A', attempts: 3 },
    });
  });

  it('the fallback template sent instead is recorded as such', () => {
    expect(both({ kind: 'sent', wamid: 'wamid.B', sentAs: 'fallback_template' }).message).toEqual({
      kind: 'sent',
      wamid: 'wamid.B',
      attempts: 1,
      sentAs: 'fallback_template',
    });
  });

  it('a send the ledger already knows accepted is settled sent without a POST', () => {
    expect(both({ kind: 'already_sent', wamid: 'wamid.C' }, 2)).toEqual({
      message: { kind: 'sent', wamid: 'wamid.C', attempts: 2 },
    });
  });
});

describe('send-outcome policy: permanent errors fail the message with Meta reason and error, nothing else moves', () => {
  it.each([
    [131026, 'undeliverable'],
    [131047, 'service_window_closed'],
    [470, 'service_window_closed'],
    [131048, 'spam_rate_limit'],
    [131049, 'engagement_limit'],
    [131050, 'user_opted_out'],
    [132000, 'template_error'],
    [132015, 'template_error'],
    [132016, 'template_error'],
    [100, 'invalid_parameter'],
    [999_999, 'unknown_error'],
  ])('code %i → failed %s', async (code, reason) => {
    expect(both(await meta(code), 4)).toEqual({
      message: {
        kind: 'failed',
        reason,
        error: { code, message: `meta ${code}`, httpStatus: 400 },
        attempts: 4,
      },
    });
  });

  it('an unreadable 4xx answer (not 429) fails the message', async () => {
    const d = both(await meta(UNEXPECTED_RESPONSE_CODE, { httpStatus: 404 }));
    expect(d).toMatchObject({ message: { kind: 'failed', reason: 'unexpected_response' } });
    expect(d.gate ?? d.token ?? d.pacer).toBeUndefined();
  });
});

describe('send-outcome policy: what the ledger decided without a POST', () => {
  it('a closed service window without a fallback template fails the message, this attempt not counted', () => {
    expect(both({ kind: 'window_closed' }, 2)).toEqual({
      message: { kind: 'failed', reason: 'service_window_closed', attempts: 1 },
    });
  });

  it('an in-doubt send the policy will not send again fails `in_doubt`', () => {
    expect(both({ kind: 'in_doubt_give_up' }, 2)).toEqual({
      message: { kind: 'failed', reason: 'in_doubt', attempts: 2 },
    });
  });

  it('a send withdrawn before its POST is retried after 1 s and is not an attempt', () => {
    expect(both({ kind: 'not_sent' })).toEqual({
      message: { kind: 'retry', afterMs: 1_000, why: 'not_sent', counted: false },
    });
  });

  it('a send in doubt: the direct send waits the whole time, the drain looks again every 5 s at most', () => {
    const waiting: LedgeredAttempt = { kind: 'in_doubt_wait', ms: 12_345.2 };
    expect(decideSendOutcome(waiting, direct())).toEqual({
      message: { kind: 'retry', afterMs: 12_346, why: 'in_doubt', counted: false },
    });
    expect(decideSendOutcome(waiting, drain())).toEqual({
      message: { kind: 'retry', afterMs: IN_DOUBT_RECHECK_MS, why: 'in_doubt', counted: false },
    });
    expect(decideSendOutcome({ kind: 'in_doubt_wait', ms: 800 }, drain()).message).toMatchObject({ afterMs: 800 });
  });
});

describe('send-outcome policy: the account or the token cannot send', () => {
  it.each([
    [133010, undefined, 'number_not_registered'],
    [131045, undefined, 'number_registration_error'],
    [131031, undefined, 'account_restricted'],
    [368, undefined, 'account_restricted'],
    [100, 33, 'access_lost'],
  ])('code %i/%s: the message stays queued and the gate closes (%s)', async (code, subcode, reason) => {
    const d = both(await meta(code, subcode === undefined ? {} : { subcode }));
    expect(d).toEqual({
      message: { kind: 'stays_queued' },
      gate: { close: true, code, errorReason: reason, detail: expect.stringContaining(reason) as string },
    });
  });

  it.each([0, 190])('code %i: the message stays queued and the token pauses; the gate stays as it is', async (code) => {
    const d = both(await meta(code));
    expect(d).toEqual({
      message: { kind: 'stays_queued' },
      token: { pause: true, detail: expect.stringContaining('auth_failed') as string },
    });
  });
});

describe('send-outcome policy: retryable errors', () => {
  it('130429 pauses the number for its 1 s window and retries after it, at every attempt (no growth)', async () => {
    for (const n of [1, 2, 5]) {
      expect(both(await meta(130429), n)).toEqual({
        message: {
          kind: 'retry',
          afterMs: 1_000,
          why: 'refused',
          counted: true,
          reason: 'throughput_limit',
          error: { code: 130429, message: 'meta 130429', httpStatus: 400 },
        },
        pacer: { kind: 'pause_number', ms: 1_000 },
      });
    }
  });

  it('131056 pauses the recipient 4^n s and retries after it, the same for the direct send and the drain', async () => {
    const pair = await meta(131056);
    const waits = [1, 2, 3, 4, 5, 6].map((n) => {
      const d = both(pair, n);
      expect(d.message).toMatchObject({ kind: 'retry', why: 'refused', counted: true, reason: 'pair_rate_limit' });
      expect(d.pacer).toEqual({ kind: 'pause_recipient', ms: (d.message as { afterMs: number }).afterMs });
      return d.pacer!.ms;
    });
    expect(waits).toEqual([4_000, 16_000, 64_000, 256_000, 1_024_000, 1_024_000]);
  });

  it.each([
    [4, 'app_rate_limit', 60_000],
    [80007, 'waba_rate_limit', 60_000],
    [131057, 'maintenance', 30_000],
    [2494100, 'maintenance', 30_000],
    [1, 'meta_unavailable', 5_000],
    [2, 'meta_unavailable', 5_000],
    [131000, 'meta_unavailable', 5_000],
    [131016, 'meta_unavailable', 5_000],
    [133004, 'meta_unavailable', 5_000],
  ])(
    'code %i (%s): retried after Meta wait, doubling per attempt up to 30 s, never under the wait',
    async (code, reason, wait) => {
      const a = await meta(code);
      const waits = [1, 2, 3, 4].map((n) => {
        const d = both(a, n);
        expect(d.pacer).toBeUndefined();
        expect(d.message).toMatchObject({ kind: 'retry', why: 'refused', counted: true, reason });
        return (d.message as { afterMs: number }).afterMs;
      });
      expect(waits).toEqual([1, 2, 4, 8].map((f) => Math.max(wait, Math.min(30_000, wait * f))));
    },
  );

  it('a 5xx or a 429 from something in front of Meta, and an unreadable 2xx/5xx, are retried from 5 s', async () => {
    for (const a of [
      await meta(999_999, { httpStatus: 503 }),
      await meta(999_999, { httpStatus: 429 }),
      await meta(UNEXPECTED_RESPONSE_CODE, { httpStatus: 502 }),
    ]) {
      expect([1, 2, 3].map((n) => (both(a, n).message as { afterMs: number }).afterMs)).toEqual([
        5_000, 10_000, 20_000,
      ]);
    }
  });

  it('a refused connection never reached Meta: retried from 1 s', async () => {
    const a = await answer(
      GraphApiError.fromNetworkFailure(Object.assign(new Error('x'), { code: 'ECONNREFUSED' }), false),
    );
    expect(both(a, 2)).toEqual({
      message: {
        kind: 'retry',
        afterMs: 2_000,
        why: 'refused',
        counted: true,
        reason: 'network_error',
        error: { code: NETWORK_ERROR_CODE, message: 'Graph API request failed: ECONNREFUSED', details: 'ECONNREFUSED' },
      },
    });
  });

  it('a lost answer (timeout) stays in doubt: the direct send waits the grace period, the drain looks again within 5 s', async () => {
    const lost = await answer(GraphApiError.fromNetworkFailure(new Error('aborted'), true));
    expect(decideSendOutcome(lost, direct())).toMatchObject({
      message: { kind: 'retry', afterMs: GRACE_MS, why: 'answer_lost', counted: true, reason: 'network_error' },
    });
    expect(decideSendOutcome(lost, drain())).toMatchObject({
      message: { kind: 'retry', afterMs: IN_DOUBT_RECHECK_MS, why: 'answer_lost', counted: true },
    });
    // A back-off longer than the grace period wins.
    expect(decideSendOutcome(lost, direct(6)).message).toMatchObject({ afterMs: 30_000 });
    expect(decideSendOutcome(lost, drain(6)).message).toMatchObject({ afterMs: 30_000 });
  });
});

describe('send-outcome policy: the drain counts its attempts', () => {
  it('a retryable answer at the last attempt fails the message `retries_exhausted` with Meta error; the pacer step still holds', async () => {
    expect(decideSendOutcome(await meta(131056), drain(8, 8))).toEqual({
      message: {
        kind: 'failed',
        reason: 'retries_exhausted',
        error: { code: 131056, message: 'meta 131056', httpStatus: 400 },
        attempts: 8,
      },
      pacer: { kind: 'pause_recipient', ms: 1_024_000 },
    });
    expect(decideSendOutcome(await meta(131000), drain(3, 3)).message).toMatchObject({
      kind: 'failed',
      reason: 'retries_exhausted',
    });
    expect(decideSendOutcome(await meta(131000), drain(2, 3)).message).toMatchObject({ kind: 'retry' });
  });

  it('a lost answer at the last attempt is not failed `retries_exhausted`: the message may have been delivered, the ledger decides', async () => {
    const lost = await answer(GraphApiError.fromNetworkFailure(new Error('aborted'), true));
    expect(decideSendOutcome(lost, drain(8, 8)).message).toMatchObject({
      kind: 'retry',
      why: 'answer_lost',
      counted: true,
    });
    expect(decideSendOutcome(lost, drain(9, 8)).message).toMatchObject({ kind: 'retry', why: 'answer_lost' });
    // A refusal (nothing delivered) at the last attempt still ends it.
    const refused = await answer(GraphApiError.fromNetworkFailure(new Error('ECONNREFUSED'), false));
    expect(decideSendOutcome(refused, drain(8, 8)).message).toMatchObject({
      kind: 'failed',
      reason: 'retries_exhausted',
    });
  });

  it('waits in doubt and withdrawn sends are not attempts: never exhausted', () => {
    expect(decideSendOutcome({ kind: 'in_doubt_wait', ms: 1_000 }, drain(8, 8)).message.kind).toBe('retry');
    expect(decideSendOutcome({ kind: 'not_sent' }, drain(8, 8)).message.kind).toBe('retry');
  });

  it('the direct send has no budget here: Temporal retry policy ends it', async () => {
    expect(decideSendOutcome(await meta(131000), direct(50)).message).toMatchObject({ kind: 'retry', afterMs: 30_000 });
  });
});
