import {
  GraphApiError,
  NETWORK_ERROR_CODE,
  UNEXPECTED_RESPONSE_CODE,
  classifyMetaError,
  pairLimitBackoffMs,
} from '../../src/adapters/graph/errors';

const classOf = (code: number, extra: { subcode?: number; httpStatus?: number } = {}) =>
  classifyMetaError({ code, ...extra }).class;

describe('classifyMetaError', () => {
  it.each([130429, 131056, 4, 80007, 131057, 2494100, 1, 2, 131000, 131016, 133004])(
    'code %i is retried after a wait',
    (code) => {
      const verdict = classifyMetaError({ code, httpStatus: 400 });
      expect(verdict.class).toBe('retry');
      expect(verdict.retryAfterMs).toBeGreaterThan(0);
    },
  );

  it.each([131047, 131026, 100, 131048, 131049, 131050, 132000, 132001, 132015, 132016, 470])(
    'code %i fails the message for good',
    (code) => {
      const verdict = classifyMetaError({ code, httpStatus: 400 });
      expect(verdict.class).toBe('permanent');
      expect(verdict.retryAfterMs).toBeUndefined();
    },
  );

  it.each([133010, 131045, 131031, 368, 0, 190])('code %i means the account cannot send', (code) => {
    expect(classOf(code, { httpStatus: 400 })).toBe('account_unusable');
  });

  it('code 100 with subcode 33 is lost access (account unusable), other 100s are bad requests', () => {
    expect(classifyMetaError({ code: 100, subcode: 33, httpStatus: 400 })).toMatchObject({
      class: 'account_unusable',
      reason: 'access_lost',
    });
    expect(classifyMetaError({ code: 100, subcode: 2494010, httpStatus: 400 })).toMatchObject({
      class: 'permanent',
      reason: 'invalid_parameter',
    });
    expect(classOf(100)).toBe('permanent');
  });

  it('the pair limit asks to pace the recipient, 4^n seconds', () => {
    expect(classifyMetaError({ code: 131056 })).toEqual({
      class: 'retry',
      reason: 'pair_rate_limit',
      retryAfterMs: 4_000,
      scope: 'recipient',
    });
    expect([1, 2, 3].map((n) => pairLimitBackoffMs(n))).toEqual([4_000, 16_000, 64_000]);
    expect(pairLimitBackoffMs(20)).toBe(1_024_000);
  });

  it('the throughput limit paces the phone number for one 1 s window', () => {
    expect(classifyMetaError({ code: 130429, httpStatus: 400 })).toMatchObject({
      retryAfterMs: 1_000,
      scope: 'phone_number',
    });
  });

  it('templates 132000–132016 are permanent; codes just outside are not template errors', () => {
    expect(classifyMetaError({ code: 132000 }).reason).toBe('template_error');
    expect(classifyMetaError({ code: 132016 }).reason).toBe('template_error');
    expect(classifyMetaError({ code: 131999 }).reason).toBe('unknown_error');
    expect(classifyMetaError({ code: 132017 }).reason).toBe('unknown_error');
  });

  it('an unknown code is retried on HTTP 5xx or 429, permanent on other 4xx or without a status', () => {
    expect(classifyMetaError({ code: 987654, httpStatus: 500 })).toMatchObject({
      class: 'retry',
      reason: 'server_error',
    });
    expect(classOf(987654, { httpStatus: 503 })).toBe('retry');
    expect(classOf(987654, { httpStatus: 429 })).toBe('retry');
    expect(classifyMetaError({ code: 987654, httpStatus: 400 })).toMatchObject({
      class: 'permanent',
      reason: 'unknown_error',
    });
    expect(classOf(987654, { httpStatus: 403 })).toBe('permanent');
    expect(classOf(987654)).toBe('permanent');
  });

  it('a known code keeps its class whatever the HTTP status', () => {
    expect(classOf(131026, { httpStatus: 500 })).toBe('permanent');
    expect(classOf(190, { httpStatus: 500 })).toBe('account_unusable');
  });

  it('network failures are retried; unreadable answers follow the HTTP status', () => {
    expect(classifyMetaError({ code: NETWORK_ERROR_CODE })).toMatchObject({ class: 'retry', reason: 'network_error' });
    expect(classOf(UNEXPECTED_RESPONSE_CODE, { httpStatus: 502 })).toBe('retry');
    expect(classOf(UNEXPECTED_RESPONSE_CODE, { httpStatus: 200 })).toBe('retry');
    expect(classOf(UNEXPECTED_RESPONSE_CODE, { httpStatus: 404 })).toBe('permanent');
  });

  it('returns a fresh object each time', () => {
    const a = classifyMetaError({ code: 130429 });
    a.retryAfterMs = 99;
    expect(classifyMetaError({ code: 130429 }).retryAfterMs).toBe(1_000);
  });
});

describe('GraphApiError', () => {
  it('carries Meta fields and its classification, and converts to MetaErrorInfo', () => {
    const err = new GraphApiError({
      code: 130429,
      subcode: 2494055,
      message: '(#130429) Rate limit hit',
      details: 'Cloud API message throughput has been reached.',
      fbtraceId: 'Az8or2yhqkZfEZ-_4Qn_Bam',
      httpStatus: 400,
    });
    expect(err).toBeInstanceOf(Error);
    expect(err.name).toBe('GraphApiError');
    expect(err.errorClass).toBe('retry');
    expect(err.reason).toBe('throughput_limit');
    expect(err.mayHaveBeenSent).toBe(false);
    expect(err.toMetaErrorInfo()).toEqual({
      code: 130429,
      subcode: 2494055,
      message: '(#130429) Rate limit hit',
      details: 'Cloud API message throughput has been reached.',
      fbtraceId: 'Az8or2yhqkZfEZ-_4Qn_Bam',
      httpStatus: 400,
    });
  });

  it('leaves absent fields out of MetaErrorInfo (plain data for the workflow boundary)', () => {
    const info = new GraphApiError({ code: 131026, message: 'undeliverable' }).toMetaErrorInfo();
    expect(info).toEqual({ code: 131026, message: 'undeliverable' });
    expect(Object.keys(info)).toEqual(['code', 'message']);
  });

  it('a refused connection is a retry that certainly did not send', () => {
    const cause = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' });
    const err = GraphApiError.fromNetworkFailure(new TypeError('fetch failed', { cause }), false);
    expect(err).toMatchObject({ code: NETWORK_ERROR_CODE, errorClass: 'retry', details: 'ECONNREFUSED' });
    expect(err.mayHaveBeenSent).toBe(false);
    expect(err.cause).toBeInstanceOf(TypeError);
  });

  it('a timeout or a reset is a retry that may have sent', () => {
    const timeout = GraphApiError.fromNetworkFailure(new DOMException('aborted', 'TimeoutError'), true);
    expect(timeout).toMatchObject({ code: NETWORK_ERROR_CODE, errorClass: 'retry', details: 'timeout' });
    expect(timeout.mayHaveBeenSent).toBe(true);
    const reset = GraphApiError.fromNetworkFailure(
      Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }),
      false,
    );
    expect(reset.mayHaveBeenSent).toBe(true);
  });
});
