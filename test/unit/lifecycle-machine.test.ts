import type { DrainResult } from '../../src/contracts';
import type { WabaSnapshot } from '../../src/lifecycle/wabas.store';
import type { LifecycleEvent, LifecycleEventType, LifecycleSettings, WabaState } from '../../src/contracts';
import {
  alertContent,
  describeWakeUp,
  nextWakeUp,
  probeDue,
  probePointAfter,
  probeSweepPeriodMs,
  stretchedPeriod,
  sweepPeriodAfterRead,
  SWEEP_MAX_PERIOD_MS,
  onLoad,
  refusal,
  transition,
  view,
  type Command,
  type LifecycleState,
  type MachineInput,
  type Step,
  type StepContext,
} from '../../src/lifecycle/machine';

/**
 * The lifecycle state machine alone: for every input in every state, the next state and the
 * commands the workflow shell is asked to carry out, in order (the order is what histories record).
 */

const STATES: WabaState[] = ['connected', 'offboarded', 'draining', 'reconnect_abandoned', 'partner_removed'];
const SINCE = '2026-01-01T00:00:00.000Z';
const NOW = Date.parse('2026-01-02T00:00:00.000Z');
const NOW_ISO = new Date(NOW).toISOString();
const LATER = NOW + 1_500;
const LATER_ISO = new Date(LATER).toISOString();

const settings: LifecycleSettings = {
  escalation: [
    { level: 1, afterMs: 5 * 60_000, severity: 'warning' },
    { level: 2, afterMs: 60 * 60_000, severity: 'page' },
    { level: 3, afterMs: 24 * 60 * 60_000, severity: 'critical' },
  ],
  onAbandon: 'fail',
  alertSinks: ['log'],
};

function waba(state: WabaState, extra: Partial<WabaSnapshot> = {}): LifecycleState {
  return {
    wabaId: 'W1',
    state,
    since: SINCE,
    escalationLevel: state === 'offboarded' || state === 'reconnect_abandoned' ? 1 : 0,
    reason: 'earlier reason',
    events: [{ type: 'ACCOUNT_OFFBOARDED', at: SINCE, outcome: 'applied' }],
    updatedAt: SINCE,
    ...extra,
  };
}

function ctx(extra: Partial<StepContext> = {}): StepContext {
  return { now: NOW, settings, drainRunning: false, ...extra };
}

function event(type: LifecycleEventType, extra: Partial<LifecycleEvent> = {}): MachineInput {
  return {
    kind: 'event',
    event: { key: 'k1', type, wabaId: 'W1', receivedAt: NOW_ISO, source: 'webhook', ...extra },
  };
}

/** Deep-frozen, so a transition that mutated its input would throw. */
function frozen<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) frozen(v);
    Object.freeze(value);
  }
  return value;
}

function step(state: LifecycleState, input: MachineInput, c: StepContext = ctx()): Step {
  return transition(frozen(state), frozen(input), c);
}

const lastEvent = (s: Step) => s.state.events[s.state.events.length - 1];
const types = (s: Step) => s.commands.map((c) => c.type);
const persistOf = (s: Step): Command => ({ type: 'persist', waba: s.state });
const upsert = (state: WabaState, escalationLevel: number): Command => ({
  type: 'upsertSearchAttributes',
  state,
  escalationLevel,
});
const COUNT: Command = { type: 'countQueued' };
/** A removal Meta gives a final reason for (the others are pauses: `removalIsPause`). */
const FINAL: Partial<LifecycleEvent> = { disconnectionInfo: { reason: 'ACCOUNT_DISCONNECTED', initiatedBy: 'USER' } };

/** The commands of a step that only records the event: write (which counts the queue too). */
const recordOnly = (s: Step): Command[] => [persistOf(s)];

describe('lifecycle machine: ACCOUNT_OFFBOARDED and SEND_ACCOUNT_UNUSABLE in each state', () => {
  describe.each(['ACCOUNT_OFFBOARDED', 'SEND_ACCOUNT_UNUSABLE'] as const)('%s', (type) => {
    const alertCommands: Command[] =
      type === 'SEND_ACCOUNT_UNUSABLE'
        ? [{ type: 'alert', alert: { kind: 'accountUnusable', wabaId: 'W1', detail: 'why' } }]
        : [];

    it.each(['connected', 'draining'] as const)(
      'when %s and no drain runs: closes the gate now (offboarded, level 0, reason = detail), writes, counts, upserts',
      (state) => {
        const s = step(waba(state, { escalationLevel: 2 }), event(type, { detail: 'why' }));
        expect(s.state).toMatchObject({ state: 'offboarded', since: NOW_ISO, escalationLevel: 0, reason: 'why' });
        expect(s.state.updatedAt).toBe(NOW_ISO);
        expect(lastEvent(s)).toEqual({ type, metaTime: undefined, outcome: 'applied', detail: 'why', at: NOW_ISO });
        expect(s.commands).toEqual([persistOf(s), upsert('offboarded', 0), ...alertCommands]);
      },
    );

    it('without a detail, the reason is the event type', () => {
      const s = step(waba('connected'), event(type));
      expect(s.state.reason).toBe(type);
    });

    it.each(['connected', 'draining'] as const)(
      'when %s with a drain running: records the event, asks to cancel the drain and does nothing else yet',
      (state) => {
        const before = waba(state);
        const s = step(before, event(type, { detail: 'why', metaTime: 50 }), ctx({ drainRunning: true }));
        const cause = type === 'ACCOUNT_OFFBOARDED' ? 'offboarded' : 'send_error';
        expect(s.commands).toEqual([
          {
            type: 'cancelDrain',
            then: { action: 'closeGate', type, detail: 'why', closure: { cause, metaTime: 50, detail: 'why' } },
          },
        ]);
        expect(s.state).toEqual({
          ...before,
          lastOffboardedMetaTime: 50,
          events: [...before.events, { type, metaTime: 50, outcome: 'applied', detail: 'why', at: NOW_ISO }],
          // A closing webhook event is recorded as handled (its gate hold stops counting once saved).
          ...(type === 'ACCOUNT_OFFBOARDED' ? { closingHandled: { key: 'k1', receivedAt: NOW_ISO } } : {}),
        });
      },
    );

    it('once the cancelled drain has stopped: closes the gate at that later time', () => {
      const first = step(waba('draining'), event(type, { detail: 'why' }), ctx({ drainRunning: true }));
      const cancel = first.commands[0];
      if (cancel?.type !== 'cancelDrain') throw new Error('expected cancelDrain');
      const s = step(first.state, { kind: 'drainStopped', then: cancel.then }, ctx({ now: LATER }));
      expect(s.state).toMatchObject({ state: 'offboarded', since: LATER_ISO, updatedAt: LATER_ISO, reason: 'why' });
      expect(lastEvent(s)?.at).toBe(NOW_ISO);
      expect(s.commands).toEqual([persistOf(s), upsert('offboarded', 0), ...alertCommands]);
    });

    it.each(['offboarded', 'reconnect_abandoned'] as const)(
      'when %s: joins the open offboarding (state, since, level and reason unchanged), writes and counts only',
      (state) => {
        const before = waba(state, { escalationLevel: 2 });
        const s = step(before, event(type), ctx({ drainRunning: state === 'reconnect_abandoned' }));
        expect(lastEvent(s)?.outcome).toBe('joined the open offboarding');
        expect(s.state).toMatchObject({ state, since: SINCE, escalationLevel: 2, reason: 'earlier reason' });
        expect(s.commands).toEqual(recordOnly(s));
      },
    );

    it('when partner_removed: ignored, recorded, written and counted', () => {
      const s = step(waba('partner_removed'), event(type, { metaTime: 10 }));
      expect(lastEvent(s)?.outcome).toBe('ignored: partner removed');
      expect(s.state).toMatchObject({ state: 'partner_removed', since: SINCE, lastOffboardedMetaTime: 10 });
      expect(s.commands).toEqual(recordOnly(s));
    });
  });
});

describe('lifecycle machine: ACCOUNT_RECONNECTED in each state', () => {
  it.each(['offboarded', 'reconnect_abandoned'] as const)(
    'when %s: moves to draining (level kept, reason cleared), writes, counts, upserts, then starts the reconnected drain',
    (state) => {
      const s = step(waba(state, { escalationLevel: 2 }), event('ACCOUNT_RECONNECTED', { detail: 'back' }));
      expect(s.state).toMatchObject({ state: 'draining', since: NOW_ISO, escalationLevel: 2, reason: undefined });
      expect(lastEvent(s)).toEqual({
        type: 'ACCOUNT_RECONNECTED',
        metaTime: undefined,
        outcome: 'draining',
        detail: 'back',
        at: NOW_ISO,
      });
      expect(s.commands).toEqual([
        persistOf(s),
        upsert('draining', 2),
        { type: 'startDrain', mode: 'reconnected', onlyIfQueued: true },
      ]);
    },
  );

  it.each([
    ['draining', 'duplicate: already draining'],
    ['connected', 'no offboarding open; remembered'],
    ['partner_removed', 'ignored: partner removed'],
  ] as const)('when %s: outcome "%s", state unchanged, writes and counts only', (state, outcome) => {
    const s = step(waba(state), event('ACCOUNT_RECONNECTED'));
    expect(lastEvent(s)?.outcome).toBe(outcome);
    expect(s.state).toMatchObject({ state, since: SINCE, reason: 'earlier reason' });
    expect(s.commands).toEqual(recordOnly(s));
  });
});

describe('lifecycle machine: PARTNER_REMOVED in each state', () => {
  it.each(['connected', 'offboarded', 'draining', 'reconnect_abandoned'] as const)(
    'when %s and no drain runs: moves to partner_removed, writes, counts, upserts, fails the queue (partner_removed), alerts',
    (state) => {
      const s = step(
        waba(state, { escalationLevel: 2 }),
        event('PARTNER_REMOVED', { ...FINAL, detail: 'gone', metaTime: 7 }),
      );
      expect(s.state).toMatchObject({ state: 'partner_removed', since: NOW_ISO, escalationLevel: 2, reason: 'gone' });
      expect(lastEvent(s)).toEqual({
        type: 'PARTNER_REMOVED',
        metaTime: 7,
        outcome: 'applied',
        detail: 'gone',
        at: NOW_ISO,
      });
      expect(s.commands).toEqual([
        persistOf(s),
        upsert('partner_removed', 2),
        { type: 'failQueue', reason: 'partner_removed', queueEmptied: true },
        { type: 'alert', alert: { kind: 'partnerRemoved', wabaId: 'W1', detail: 'gone' } },
      ]);
    },
  );

  it('without a detail, the reason is PARTNER_REMOVED', () => {
    expect(step(waba('offboarded'), event('PARTNER_REMOVED', FINAL)).state.reason).toBe('PARTNER_REMOVED');
  });

  it.each(['connected', 'draining'] as const)(
    'when %s with a drain running: records nothing yet and asks to cancel the drain first',
    (state) => {
      const before = waba(state);
      const s = step(
        before,
        event('PARTNER_REMOVED', { ...FINAL, detail: 'gone', metaTime: 7 }),
        ctx({ drainRunning: true }),
      );
      expect(s.state).toEqual({
        ...before,
        lastPartnerRemovedMetaTime: 7,
        disconnectionInfo: FINAL.disconnectionInfo,
        closingHandled: { key: 'k1', receivedAt: NOW_ISO },
      });
      expect(s.commands).toEqual([
        {
          type: 'cancelDrain',
          then: {
            action: 'removePartner',
            metaTime: 7,
            detail: 'gone',
            closure: {
              cause: 'partner_removed',
              metaTime: 7,
              detail: 'gone',
              disconnectionInfo: FINAL.disconnectionInfo,
            },
          },
        },
      ]);
    },
  );

  it('once the cancelled drain has stopped: records the event and removes the partner at that later time', () => {
    const s = step(
      waba('draining'),
      {
        kind: 'drainStopped',
        then: {
          action: 'removePartner',
          metaTime: 7,
          detail: 'gone',
          closure: { cause: 'partner_removed', metaTime: 7 },
        },
      },
      ctx({ now: LATER }),
    );
    expect(s.state).toMatchObject({ state: 'partner_removed', since: LATER_ISO });
    expect(lastEvent(s)).toEqual({
      type: 'PARTNER_REMOVED',
      metaTime: 7,
      outcome: 'applied',
      detail: 'gone',
      at: LATER_ISO,
    });
    expect(types(s)).toEqual(['persist', 'upsertSearchAttributes', 'failQueue', 'alert']);
  });

  it('when already partner_removed: a duplicate, written and counted only', () => {
    const s = step(waba('partner_removed'), event('PARTNER_REMOVED', FINAL), ctx({ drainRunning: true }));
    expect(lastEvent(s)?.outcome).toBe('duplicate');
    expect(s.state).toMatchObject({ state: 'partner_removed', since: SINCE });
    expect(s.commands).toEqual(recordOnly(s));
  });
});

describe('lifecycle machine: QUEUE_STRAY in each state', () => {
  it('when connected and no drain runs: starts a stray drain before writing and counting', () => {
    const s = step(waba('connected'), event('QUEUE_STRAY'));
    expect(lastEvent(s)?.outcome).toBe('draining stray entries');
    expect(s.state).toMatchObject({ state: 'connected', since: SINCE });
    expect(s.commands).toEqual([{ type: 'startDrain', mode: 'stray', onlyIfQueued: false }, persistOf(s)]);
  });

  it.each([
    ['connected', true],
    ['draining', true],
    ['draining', false],
    ['offboarded', false],
  ] as const)(
    'when %s (drain running: %s): left to the open cycle, written and counted only',
    (state, drainRunning) => {
      const s = step(waba(state), event('QUEUE_STRAY'), ctx({ drainRunning }));
      expect(lastEvent(s)?.outcome).toBe('queue will be drained by the open cycle');
      expect(s.state).toMatchObject({ state, since: SINCE });
      expect(s.commands).toEqual(recordOnly(s));
    },
  );
});

describe('lifecycle machine: strays of a WABA whose sends are refused', () => {
  it.each([
    ['partner_removed', 'fail', 'partner_removed'],
    ['reconnect_abandoned', 'fail', 'reconnect_timeout'],
  ] as const)(
    'when %s (ON_ABANDON=%s): written, counted, and the strays are failed with %s',
    (state, onAbandon, reason) => {
      const s = step(waba(state), event('QUEUE_STRAY'), ctx({ settings: { ...settings, onAbandon } }));
      expect(lastEvent(s)?.outcome).toBe(`stray entries failed (${reason})`);
      expect(s.commands).toEqual([...recordOnly(s), { type: 'failQueue', reason, queueEmptied: false }]);
    },
  );

  it('when reconnect_abandoned with ON_ABANDON=keep: left queued', () => {
    const s = step(
      waba('reconnect_abandoned'),
      event('QUEUE_STRAY'),
      ctx({ settings: { ...settings, onAbandon: 'keep' } }),
    );
    expect(s.commands).toEqual(recordOnly(s));
  });
});

describe('lifecycle machine: ordering by Meta time', () => {
  it.each([
    [100, 'stale: a later reconnection was already seen'],
    [200, 'stale: a later reconnection was already seen'],
  ])(
    'an offboarding at %i with a reconnection seen at 200 is stale, even in an open offboarding',
    (metaTime, outcome) => {
      const s = step(waba('offboarded', { lastReconnectedMetaTime: 200 }), event('ACCOUNT_OFFBOARDED', { metaTime }));
      expect(lastEvent(s)?.outcome).toBe(outcome);
      expect(s.commands).toEqual(recordOnly(s));
    },
  );

  it('a stale offboarding on a connected WABA leaves the gate open but still remembers its time', () => {
    const s = step(
      waba('connected', { lastReconnectedMetaTime: 200, lastOffboardedMetaTime: 50 }),
      event('ACCOUNT_OFFBOARDED', { metaTime: 150 }),
    );
    expect(s.state).toMatchObject({ state: 'connected', lastOffboardedMetaTime: 150 });
    expect(lastEvent(s)?.outcome).toBe('stale: a later reconnection was already seen');
  });

  it('an offboarding newer than the last reconnection closes the gate', () => {
    const s = step(waba('connected', { lastReconnectedMetaTime: 200 }), event('ACCOUNT_OFFBOARDED', { metaTime: 201 }));
    expect(s.state).toMatchObject({ state: 'offboarded', lastOffboardedMetaTime: 201 });
  });

  it('an offboarding without a Meta time is never stale and leaves the remembered time alone', () => {
    const s = step(
      waba('connected', { lastReconnectedMetaTime: 200, lastOffboardedMetaTime: 90 }),
      event('ACCOUNT_OFFBOARDED'),
    );
    expect(s.state).toMatchObject({ state: 'offboarded', lastOffboardedMetaTime: 90 });
  });

  it('an older offboarding does not lower the remembered offboarding time', () => {
    const s = step(waba('offboarded', { lastOffboardedMetaTime: 300 }), event('ACCOUNT_OFFBOARDED', { metaTime: 100 }));
    expect(s.state.lastOffboardedMetaTime).toBe(300);
    expect(lastEvent(s)?.outcome).toBe('joined the open offboarding');
  });

  it('a reconnection older than the current offboarding is stale, even on a connected WABA, and its time is remembered', () => {
    const s = step(
      waba('connected', { lastOffboardedMetaTime: 500, lastReconnectedMetaTime: 100 }),
      event('ACCOUNT_RECONNECTED', { metaTime: 400 }),
    );
    expect(lastEvent(s)?.outcome).toBe('stale: older than the current offboarding');
    expect(s.state).toMatchObject({ state: 'connected', lastReconnectedMetaTime: 400 });
    expect(s.commands).toEqual(recordOnly(s));
  });

  it("a reconnection older than the open offboarding is accepted (Meta's example pair): it drains", () => {
    const s = step(
      waba('offboarded', { lastOffboardedMetaTime: 1748477359 }),
      event('ACCOUNT_RECONNECTED', { metaTime: 1744823932 }),
    );
    expect(s.state.state).toBe('draining');
    expect(lastEvent(s)?.outcome).toBe("draining (its time is older than the offboarding's: accepted)");
    expect(s.commands.at(-1)).toEqual({ type: 'startDrain', mode: 'reconnected', onlyIfQueued: true });
  });

  it('a reconnection at the same time as the offboarding is not stale: it drains', () => {
    const s = step(
      waba('offboarded', { lastOffboardedMetaTime: 500 }),
      event('ACCOUNT_RECONNECTED', { metaTime: 500 }),
    );
    expect(s.state).toMatchObject({ state: 'draining', lastReconnectedMetaTime: 500 });
  });

  it('a reconnection without a Meta time is never stale', () => {
    const s = step(waba('offboarded', { lastOffboardedMetaTime: 500 }), event('ACCOUNT_RECONNECTED'));
    expect(s.state.state).toBe('draining');
    expect(s.state.lastReconnectedMetaTime).toBeUndefined();
  });

  it('an older reconnection does not lower the remembered reconnection time', () => {
    const s = step(waba('draining', { lastReconnectedMetaTime: 900 }), event('ACCOUNT_RECONNECTED', { metaTime: 800 }));
    expect(s.state.lastReconnectedMetaTime).toBe(900);
  });

  it('partner removal ignores Meta times: it applies and does not touch the remembered ones', () => {
    const s = step(
      waba('offboarded', { lastOffboardedMetaTime: 500, lastReconnectedMetaTime: 600 }),
      event('PARTNER_REMOVED', { ...FINAL, metaTime: 1 }),
    );
    expect(s.state).toMatchObject({
      state: 'partner_removed',
      lastOffboardedMetaTime: 500,
      lastReconnectedMetaTime: 600,
    });
  });

  it('a partner-removed WABA ignores a newer reconnection but remembers its time', () => {
    const s = step(waba('partner_removed'), event('ACCOUNT_RECONNECTED', { metaTime: 999 }));
    expect(s.state).toMatchObject({ state: 'partner_removed', lastReconnectedMetaTime: 999 });
    expect(lastEvent(s)?.outcome).toBe('ignored: partner removed');
  });
});

describe('lifecycle machine: operator actions', () => {
  it.each([
    ['force_resume', 'offboarded', undefined],
    ['force_resume', 'reconnect_abandoned', undefined],
    [
      'force_resume',
      'connected',
      'force_resume applies to an offboarded or abandoned WABA, not to one that is connected',
    ],
    [
      'force_resume',
      'draining',
      'force_resume applies to an offboarded or abandoned WABA, not to one that is draining',
    ],
    [
      'force_resume',
      'partner_removed',
      'force_resume applies to an offboarded or abandoned WABA, not to one that is partner_removed (use reinstate once the WABA is shared with us again)',
    ],
    ['force_abandon', 'offboarded', undefined],
    ['force_abandon', 'connected', 'force_abandon applies to an offboarded WABA, not to one that is connected'],
    ['force_abandon', 'draining', 'force_abandon applies to an offboarded WABA, not to one that is draining'],
    [
      'force_abandon',
      'reconnect_abandoned',
      'force_abandon applies to an offboarded WABA, not to one that is reconnect_abandoned',
    ],
    [
      'force_abandon',
      'partner_removed',
      'force_abandon applies to an offboarded WABA, not to one that is partner_removed',
    ],
  ] as const)('%s on a %s WABA: refusal is %p', (action, state, expected) => {
    expect(refusal(waba(state), { action, reason: 'r' })).toBe(expected);
  });

  // The update handler checks the refusal on acceptance; the loop then applies the action as
  // accepted, even when events applied in between moved the state. Every state is covered.
  it.each(STATES)(
    'force_resume applied to a %s WABA: drains (reason "force_resume: <reason>"), writes, counts, upserts, starts the reconnected drain',
    (state) => {
      const s = step(waba(state), {
        kind: 'operator',
        action: { action: 'force_resume', reason: 'manual', operator: 'ana' },
      });
      expect(lastEvent(s)).toEqual({
        type: 'OPERATOR_FORCE_RESUME',
        outcome: 'draining',
        detail: 'manual (by ana)',
        at: NOW_ISO,
      });
      expect(s.state).toMatchObject({
        state: 'draining',
        since: state === 'draining' ? SINCE : NOW_ISO,
        reason: 'force_resume: manual',
      });
      expect(s.commands).toEqual([
        persistOf(s),
        upsert('draining', s.state.escalationLevel),
        { type: 'startDrain', mode: 'reconnected', onlyIfQueued: true },
      ]);
    },
  );

  it.each(STATES)(
    'force_abandon applied to a %s WABA: abandons, writes, counts, upserts, fails the queue, counts again, alerts',
    (state) => {
      const s = step(waba(state), { kind: 'operator', action: { action: 'force_abandon', reason: 'client left' } });
      expect(lastEvent(s)).toEqual({
        type: 'OPERATOR_FORCE_ABANDON',
        outcome: 'abandoned',
        detail: 'client left',
        at: NOW_ISO,
      });
      expect(s.state).toMatchObject({ state: 'reconnect_abandoned', reason: 'force_abandon: client left' });
      expect(s.commands).toEqual([
        persistOf(s),
        upsert('reconnect_abandoned', s.state.escalationLevel),
        { type: 'failQueue', reason: 'reconnect_timeout', queueEmptied: false },
        COUNT,
        {
          type: 'alert',
          alert: { kind: 'abandoned', wabaId: 'W1', level: 3, reason: 'force_abandon: client left', onAbandon: 'fail' },
        },
      ]);
    },
  );

  it('force_abandon with ON_ABANDON=keep keeps the queue: no failQueue, only a count before the alert', () => {
    const s = step(
      waba('offboarded'),
      { kind: 'operator', action: { action: 'force_abandon', reason: 'r' } },
      ctx({ settings: { ...settings, onAbandon: 'keep' } }),
    );
    expect(types(s)).toEqual(['persist', 'upsertSearchAttributes', 'countQueued', 'alert']);
  });
});

describe('lifecycle machine: escalation levels', () => {
  it.each([
    [1, 'warning', 5 * 60_000],
    [2, 'page', 60 * 60_000],
  ] as const)(
    'level %i (%s, not final): sets the level, keeps state, since and reason, writes, counts, upserts, alerts',
    (level, severity, afterMs) => {
      const s = step(waba('offboarded', { escalationLevel: level - 1 }), { kind: 'escalation', level });
      expect(s.state).toMatchObject({
        state: 'offboarded',
        since: SINCE,
        escalationLevel: level,
        reason: 'earlier reason',
      });
      expect(lastEvent(s)).toEqual({ type: 'ESCALATED', outcome: `level ${level} (${severity})`, at: NOW_ISO });
      expect(s.commands).toEqual([
        persistOf(s),
        upsert('offboarded', level),
        { type: 'alert', alert: { kind: 'escalated', wabaId: 'W1', level, severity, afterMs, since: SINCE } },
      ]);
    },
  );

  it('the final level with ON_ABANDON=fail: abandons (level kept), fails the queue with reconnect_timeout, counts, alerts', () => {
    const s = step(waba('offboarded', { escalationLevel: 2 }), { kind: 'escalation', level: 3 });
    expect(lastEvent(s)).toEqual({ type: 'ESCALATED', outcome: 'level 3 (critical), final', at: NOW_ISO });
    expect(s.state).toMatchObject({
      state: 'reconnect_abandoned',
      since: NOW_ISO,
      escalationLevel: 3,
      reason: 'no ACCOUNT_RECONNECTED after 1440 min',
    });
    expect(s.commands).toEqual([
      persistOf(s),
      upsert('reconnect_abandoned', 3),
      { type: 'failQueue', reason: 'reconnect_timeout', queueEmptied: false },
      COUNT,
      {
        type: 'alert',
        alert: {
          kind: 'abandoned',
          wabaId: 'W1',
          level: 3,
          reason: 'no ACCOUNT_RECONNECTED after 1440 min',
          onAbandon: 'fail',
        },
      },
    ]);
  });

  it('the final level with ON_ABANDON=keep: abandons without failing the queue', () => {
    const keep = { ...settings, onAbandon: 'keep' as const };
    const s = step(
      waba('offboarded', { escalationLevel: 2 }),
      { kind: 'escalation', level: 3 },
      ctx({ settings: keep }),
    );
    expect(s.state.state).toBe('reconnect_abandoned');
    expect(s.commands).toEqual([
      persistOf(s),
      upsert('reconnect_abandoned', 3),
      COUNT,
      {
        type: 'alert',
        alert: {
          kind: 'abandoned',
          wabaId: 'W1',
          level: 3,
          reason: 'no ACCOUNT_RECONNECTED after 1440 min',
          onAbandon: 'keep',
        },
      },
    ]);
  });

  it('with a single level, level 1 is final', () => {
    const one = { ...settings, escalation: [{ level: 1, afterMs: 90_000, severity: 'critical' as const }] };
    const s = step(
      waba('offboarded', { escalationLevel: 0 }),
      { kind: 'escalation', level: 1 },
      ctx({ settings: one }),
    );
    expect(s.state).toMatchObject({ state: 'reconnect_abandoned', reason: 'no ACCOUNT_RECONNECTED after 2 min' });
    expect(lastEvent(s)?.outcome).toBe('level 1 (critical), final');
  });

  it('a level past the settings (ESCALATION_LEVELS shortened under the run) is the last one: abandoned, never a throw', () => {
    const s = step(waba('offboarded', { escalationLevel: 2 }), { kind: 'escalation', level: 4 });
    expect(s.state).toMatchObject({ state: 'reconnect_abandoned', escalationLevel: 3 });
    expect(types(s)).toContain('failQueue');
    // A credentials closure is never abandoned, whatever the level.
    const token = waba('offboarded', { escalationLevel: 2, closure: { cause: 'credentials', at: SINCE } });
    expect(step(token, { kind: 'escalation', level: 4 }).state).toMatchObject({
      state: 'offboarded',
      escalationLevel: 3,
    });
    // No levels at all: nothing to escalate to.
    const none = ctx({ settings: { ...settings, escalation: [] } });
    expect(step(waba('offboarded'), { kind: 'escalation', level: 1 }, none).commands).toEqual([]);
  });

  it('a WABA past the last level of shortened settings, never abandoned, has its last level due now', () => {
    const short: LifecycleSettings = { ...settings, escalation: settings.escalation.slice(0, 2) };
    expect(nextWakeUp(waba('offboarded', { escalationLevel: 3 }), short, false, NOW)).toEqual({
      kind: 'escalation',
      level: 2,
      at: NOW,
    });
    // At the last level exactly (a credentials closure stays there): waits for input.
    const token = waba('offboarded', { escalationLevel: 3, closure: { cause: 'credentials', at: SINCE } });
    expect(nextWakeUp(token, short, false, NOW)).toEqual({ kind: 'input' });
    expect(nextWakeUp(waba('offboarded', { escalationLevel: 2 }), short, false, NOW)).toEqual({
      kind: 'escalation',
      level: 2,
      at: NOW,
    });
  });
});

describe('lifecycle machine: drain results', () => {
  const finished: DrainResult = { sent: 5, failed: 1, expired: 2, alreadySettled: 0 };
  const unusable: DrainResult = { ...finished, stopped: 'account_unusable', detail: 'code 131031' };

  it('finished while draining: opens the gate (connected, level 0), writes, counts, upserts, alerts, then a stray drain if entries remain', () => {
    const s = step(waba('draining', { escalationLevel: 2 }), { kind: 'drainEnded', outcome: finished });
    expect(s.state).toMatchObject({ state: 'connected', since: NOW_ISO, escalationLevel: 0, reason: undefined });
    expect(s.state.events).toEqual(waba('draining').events);
    expect(s.commands).toEqual([
      persistOf(s),
      upsert('connected', 0),
      { type: 'alert', alert: { kind: 'reconnected', wabaId: 'W1', sent: 5, failed: 1, expired: 2 } },
      { type: 'startDrain', mode: 'stray', onlyIfQueued: true },
    ]);
  });

  it('finished while connected (a stray drain): counts the queue and drains again if entries remain, nothing written', () => {
    const before = waba('connected');
    const s = step(before, { kind: 'drainEnded', outcome: finished });
    expect(s.state).toEqual(before);
    expect(s.commands).toEqual([COUNT, { type: 'startDrain', mode: 'stray', onlyIfQueued: true }]);
  });

  it.each(['offboarded', 'reconnect_abandoned', 'partner_removed'] as const)(
    'finished while %s: counts the queue only',
    (state) => {
      const before = waba(state);
      const s = step(before, { kind: 'drainEnded', outcome: finished });
      expect(s.state).toEqual(before);
      expect(s.commands).toEqual([COUNT]);
    },
  );

  it.each(['draining', 'connected'] as const)(
    'stopped (account unusable) while %s: records it, closes the gate (reason = detail), writes, counts, upserts, alerts',
    (state) => {
      const s = step(waba(state), { kind: 'drainEnded', outcome: unusable });
      expect(lastEvent(s)).toEqual({
        type: 'SEND_ACCOUNT_UNUSABLE',
        outcome: 'drain stopped; gate stays closed',
        detail: 'code 131031',
        at: NOW_ISO,
      });
      expect(s.state).toMatchObject({ state: 'offboarded', since: NOW_ISO, escalationLevel: 0, reason: 'code 131031' });
      expect(s.commands).toEqual([
        persistOf(s),
        upsert('offboarded', 0),
        { type: 'alert', alert: { kind: 'accountUnusable', wabaId: 'W1', detail: 'code 131031' } },
      ]);
    },
  );

  it('stopped (account unusable) without a detail: the reason is SEND_ACCOUNT_UNUSABLE', () => {
    const s = step(waba('draining'), { kind: 'drainEnded', outcome: { ...finished, stopped: 'account_unusable' } });
    expect(s.state.reason).toBe('SEND_ACCOUNT_UNUSABLE');
  });

  it('stopped (account unusable) while already offboarded: since and level stay, the gate stays closed', () => {
    const s = step(waba('offboarded', { escalationLevel: 2 }), { kind: 'drainEnded', outcome: unusable });
    expect(s.state).toMatchObject({ state: 'offboarded', since: SINCE, escalationLevel: 2, reason: 'code 131031' });
    expect(types(s)).toEqual(['persist', 'upsertSearchAttributes', 'alert']);
  });

  it.each(STATES)(
    'interrupted (failed or cancelled unasked) while %s: never draining with nothing running',
    (state) => {
      const before = waba(state);
      const s = step(before, { kind: 'drainEnded', outcome: 'interrupted' });
      expect(s.state).toEqual(before);
      if (state === 'draining')
        expect(s.commands).toEqual([COUNT, { type: 'startDrain', mode: 'reconnected', onlyIfQueued: true }]);
      else if (state === 'connected')
        expect(s.commands).toEqual([COUNT, { type: 'startDrain', mode: 'stray', onlyIfQueued: true }]);
      else expect(s.commands).toEqual([]);
    },
  );

  it('after a stopped drain, closeGate for ACCOUNT_OFFBOARDED raises no alert', () => {
    const s = step(waba('draining'), {
      kind: 'drainStopped',
      then: { action: 'closeGate', type: 'ACCOUNT_OFFBOARDED', closure: { cause: 'offboarded' } },
    });
    expect(s.state).toMatchObject({
      state: 'offboarded',
      reason: 'ACCOUNT_OFFBOARDED',
      closure: { cause: 'offboarded' },
    });
    expect(types(s)).toEqual(['persist', 'upsertSearchAttributes']);
  });
});

describe('lifecycle machine: the event log', () => {
  it('keeps the 20 newest entries, dropping the oldest', () => {
    const events = Array.from({ length: 20 }, (_, i) => ({
      type: 'QUEUE_STRAY' as const,
      at: SINCE,
      outcome: `e${i}`,
    }));
    const s = step(waba('offboarded', { events }), event('ACCOUNT_OFFBOARDED'));
    expect(s.state.events).toHaveLength(20);
    expect(s.state.events[0]?.outcome).toBe('e1');
    expect(lastEvent(s)?.outcome).toBe('joined the open offboarding');
  });

  it('every step that writes carries the state it returns, stamped with the step time', () => {
    const s = step(waba('connected'), event('ACCOUNT_RECONNECTED'));
    expect(s.commands[0]).toEqual({ type: 'persist', waba: s.state });
    expect(s.state.updatedAt).toBe(NOW_ISO);
  });
});

describe('lifecycle machine: start of a run, wake-ups and the state query', () => {
  it.each(STATES)('a run that loads a %s WABA resumes a drain only when it was draining', (state) => {
    expect(onLoad(waba(state))).toEqual(
      state === 'draining' ? [{ type: 'startDrain', mode: 'reconnected', onlyIfQueued: true }] : [],
    );
  });

  it.each(STATES)('while a drain runs, a %s WABA waits for input only', (state) => {
    expect(nextWakeUp(waba(state), settings, true, NOW)).toEqual({ kind: 'input' });
  });

  it.each([0, 1, 2])('offboarded at level %i: the next level is due at since + its delay', (level) => {
    const next = settings.escalation[level]!;
    expect(nextWakeUp(waba('offboarded', { escalationLevel: level }), settings, false, NOW)).toEqual({
      kind: 'escalation',
      level: next.level,
      at: Date.parse(SINCE) + next.afterMs,
    });
  });

  it("the sweep's fixed schedule backs off (1, 2, 4, 8 … minutes, then the cap) and finds each point in its window once", () => {
    const since = Date.parse(SINCE);
    const min = 60_000;
    const backoff: LifecycleSettings = { ...settings, probeIntervalMs: min, probeMaxIntervalMs: 30 * min };
    const points: number[] = [];
    let t = since - 1;
    for (let i = 0; i < 9; i++) {
      t = probePointAfter(since, backoff, t)!;
      points.push((t - since) / min);
    }
    expect(points).toEqual([1, 2, 4, 8, 16, 32, 62, 92, 122]);
    // Far into the steady part: arithmetic, the next cap step after t.
    expect(probePointAfter(since, backoff, since + 10_000 * min + 1)).toBe(since + 10_022 * min);
    // Without a cap: every interval; a point exactly at t is not after it.
    expect(probePointAfter(since, { ...settings, probeIntervalMs: min }, since + 3 * min)).toBe(since + 4 * min);
    expect(probePointAfter(since, settings, since)).toBeUndefined();
    // Sweeping contiguous windows of 20 s over 3 hours finds every point once, in its own window.
    const found: number[] = [];
    for (let from = since; from < since + 180 * min; from += 20_000)
      if (probeDue(since, backoff, from, from + 20_000)) found.push(Math.ceil((from + 20_000 - since) / min));
    expect(found).toEqual([1, 2, 4, 8, 16, 32, 62, 92, 122, 152]);
    // A window longer than the cap always has one (a late sweep probes once for all it missed).
    expect(probeDue(since, backoff, since + 500 * min, since + 531 * min)).toBe(true);
    expect(probeDue(since, backoff, since + 63 * min, since + 91 * min)).toBe(false);
  });

  it('the sweep looks every half interval, between 1 s and 30 s; never with probing off', () => {
    expect(probeSweepPeriodMs({ ...settings, probeIntervalMs: 60_000 })).toBe(30_000);
    expect(probeSweepPeriodMs({ ...settings, probeIntervalMs: 600_000 })).toBe(30_000);
    expect(probeSweepPeriodMs({ ...settings, probeIntervalMs: 3_000 })).toBe(1_500);
    expect(probeSweepPeriodMs({ ...settings, probeIntervalMs: 500 })).toBe(1_000);
    expect(probeSweepPeriodMs({ ...settings, probeIntervalMs: 0 })).toBeUndefined();
    expect(probeSweepPeriodMs(settings)).toBeUndefined();
  });

  it('stretches a scanning loop so its last pass took at most its share of the time, capped (the outbox relay sweep: 1/20, 60 s)', () => {
    expect(stretchedPeriod(2_000, 5, 1 / 20, 60_000)).toBe(2_000); // a small outbox: the period
    expect(stretchedPeriod(2_000, 100, 1 / 20, 60_000)).toBe(2_000);
    expect(stretchedPeriod(2_000, 101, 1 / 20, 60_000)).toBe(2_020);
    expect(stretchedPeriod(2_000, 1_500, 1 / 20, 60_000)).toBe(30_000); // 400 pending on FerretDB during a burst
    expect(stretchedPeriod(2_000, 10_000, 1 / 20, 60_000)).toBe(60_000); // never longer than the cap
    expect(stretchedPeriod(1_000, 0, 1 / 20, 60_000)).toBe(1_000); // a resweep keeps its 1 s
  });
  it("the sweep's period stretches so that reading the offboarded WABAs takes at most 1/80 of its time, up to 10 min", () => {
    expect(sweepPeriodAfterRead(30_000, 20)).toBe(30_000); // a few hundred offboarded: the period
    expect(sweepPeriodAfterRead(30_000, 375)).toBe(30_000);
    expect(sweepPeriodAfterRead(30_000, 376)).toBe(30_080);
    expect(sweepPeriodAfterRead(30_000, 4_700)).toBe(376_000); // 10,000 on FerretDB: about 6 min
    expect(sweepPeriodAfterRead(30_000, 60_000)).toBe(SWEEP_MAX_PERIOD_MS);
    expect(SWEEP_MAX_PERIOD_MS).toBe(600_000);
    expect(sweepPeriodAfterRead(1_000, 0)).toBe(1_000);
  });

  it('probed by the sweep, an offboarded WABA waits only for input or its next level (probed first there)', () => {
    const backoff: LifecycleSettings = { ...settings, probeIntervalMs: 60_000, probeMaxIntervalMs: 3_600_000 };
    const since = Date.parse(SINCE);
    const now = since + 130_000;
    const level1 = since + settings.escalation[0]!.afterMs;
    const atLevel0 = nextWakeUp(waba('offboarded', { escalationLevel: 0 }), backoff, false, now);
    expect(atLevel0).toEqual({
      kind: 'escalation',
      level: 1,
      at: level1,
      probeFirst: true,
      sweptProbeAt: since + 240_000,
    });
    expect(describeWakeUp(atLevel0)).toBe(
      `escalation level 1 at ${new Date(level1).toISOString()} (after a probe of Meta); ` +
        `next probe of Meta at ${new Date(since + 240_000).toISOString()} (by the gate probe sweep)`,
    );
    const atLast = waba('offboarded', { escalationLevel: 3, closure: { cause: 'credentials' as const, at: SINCE } });
    const pastLevels = nextWakeUp(atLast, backoff, false, now);
    expect(pastLevels).toEqual({ kind: 'input', sweptProbeAt: since + 240_000 });
    expect(describeWakeUp(pastLevels)).toMatch(
      /^waiting for a webhook.*; next probe of Meta at .* \(by the gate probe sweep\)$/,
    );
    // Probing off: the sweep has nothing to say.
    expect(nextWakeUp(atLast, settings, false, now)).toEqual({ kind: 'input' });
  });

  it('a credentials closure at the last level (never abandoned): waits for input only', () => {
    const token = waba('offboarded', { escalationLevel: 3, closure: { cause: 'credentials', at: SINCE } });
    expect(nextWakeUp(token, settings, false, NOW)).toEqual({ kind: 'input' });
  });

  it.each(['connected', 'draining', 'reconnect_abandoned', 'partner_removed'] as const)(
    'a %s WABA with no drain running has nothing to wait for',
    (state) => {
      expect(nextWakeUp(waba(state), settings, false, NOW)).toEqual({ kind: 'done' });
    },
  );

  it('the state query before the WABA is loaded shows a connected WABA with no history', () => {
    expect(view('W1', undefined, 0)).toEqual({
      wabaId: 'W1',
      state: 'connected',
      since: '',
      escalationLevel: 0,
      queued: 0,
      lastEvent: undefined,
      events: [],
      next: '',
    });
  });

  it('the state query shows the state, since, level, queue count and newest event', () => {
    const w = waba('offboarded', { escalationLevel: 2 });
    expect(view('W1', w, 7)).toEqual({
      wabaId: 'W1',
      state: 'offboarded',
      since: SINCE,
      escalationLevel: 2,
      queued: 7,
      lastEvent: w.events[0],
      events: w.events,
      next: '',
    });
  });
});

describe('lifecycle machine: alert texts', () => {
  const counts = { queued: 4, failed: 9 };

  it('account unusable: level 0 warning, with the detail (or "no detail")', () => {
    expect(alertContent({ kind: 'accountUnusable', wabaId: 'W1', detail: 'code 131031' }, counts)).toEqual({
      level: 0,
      severity: 'warning',
      title: 'Send gate closed: Meta says the account cannot send',
      text: 'A send for WABA W1 failed with an "account unusable" error (code 131031). Sends are queued until ACCOUNT_RECONNECTED or an operator force-resumes.',
    });
    expect(alertContent({ kind: 'accountUnusable', wabaId: 'W1' }, counts).text).toContain('error (no detail).');
  });

  it('partner removed: level 0 critical, with the failed count and the detail (or "no reason given")', () => {
    expect(alertContent({ kind: 'partnerRemoved', wabaId: 'W1', detail: 'gone' }, counts)).toEqual({
      level: 0,
      severity: 'critical',
      title: 'Partner removed: access to the WABA is gone',
      text: 'WABA W1 is no longer shared with us (gone). 9 queued message(s) failed with reason partner_removed; new sends are refused.',
    });
    expect(alertContent({ kind: 'partnerRemoved', wabaId: 'W1' }, counts).text).toContain('(no reason given)');
  });

  it('escalated: the level, its severity, the delay in minutes, since and the queued count', () => {
    expect(
      alertContent(
        { kind: 'escalated', wabaId: 'W1', level: 2, severity: 'page', afterMs: 3_600_000, since: SINCE },
        counts,
      ),
    ).toEqual({
      level: 2,
      severity: 'page',
      title: 'WABA offboarded for 60 min (level 2)',
      text: `WABA W1 has been offboarded since ${SINCE}; 4 message(s) are queued. Waiting for ACCOUNT_RECONNECTED. If another partner onboarded the WABA, reconnection will never come.`,
    });
  });

  it('abandoned with ON_ABANDON=fail: critical, says how many failed', () => {
    expect(alertContent({ kind: 'abandoned', wabaId: 'W1', level: 3, reason: 'r', onAbandon: 'fail' }, counts)).toEqual(
      {
        level: 3,
        severity: 'critical',
        title: 'Reconnection abandoned',
        text: 'WABA W1 did not reconnect (r). 9 queued message(s) failed with reason reconnect_timeout. A later ACCOUNT_RECONNECTED still drains and reopens the gate.',
      },
    );
  });

  it('abandoned with ON_ABANDON=keep: says how many stay queued', () => {
    expect(
      alertContent({ kind: 'abandoned', wabaId: 'W1', level: 3, reason: 'r', onAbandon: 'keep' }, counts).text,
    ).toBe(
      'WABA W1 did not reconnect (r). 4 message(s) stay queued. A later ACCOUNT_RECONNECTED still drains and reopens the gate.',
    );
  });

  it('reconnected: level 0 warning, the drain counts and the re-link notice', () => {
    expect(alertContent({ kind: 'reconnected', wabaId: 'W1', sent: 5, failed: 1, expired: 2 }, counts)).toEqual({
      level: 0,
      severity: 'warning',
      title: 'WABA reconnected: queued messages sent',
      text: 'WABA W1 is back on the Cloud API; 5 queued message(s) sent, 1 failed, 2 expired. Only the Cloud API companion is restored: the client must re-link WhatsApp Web and other companion devices by hand.',
    });
  });
});

describe('lifecycle machine: gate causes and reopen rules', () => {
  const probeSettings: LifecycleSettings = { ...settings, probeIntervalMs: 60_000, probeGraceMs: 120_000 };
  const usable: MachineInput = { kind: 'probed', result: { verdict: 'usable', detail: '2001: AVAILABLE' } };

  it('ACCOUNT_OFFBOARDED records cause offboarded with its Meta time', () => {
    const s = step(waba('connected'), event('ACCOUNT_OFFBOARDED', { metaTime: 70 }));
    expect(s.state.closure).toEqual({ cause: 'offboarded', at: NOW_ISO, metaTime: 70 });
  });

  it("a send's SEND_ACCOUNT_UNUSABLE records send_error with Meta's code, the message and the time", () => {
    const s = step(
      waba('connected'),
      event('SEND_ACCOUNT_UNUSABLE', {
        source: 'send',
        code: 133010,
        messageId: 'm1',
        causeTime: NOW - 5,
        detail: 'd',
      }),
    );
    expect(s.state.closure).toEqual({
      cause: 'send_error',
      at: NOW_ISO,
      code: 133010,
      messageId: 'm1',
      causeTime: NOW - 5,
      detail: 'd',
    });
  });

  it("a failed status's SEND_ACCOUNT_UNUSABLE records failed_status with the wamid", () => {
    const s = step(waba('connected'), event('SEND_ACCOUNT_UNUSABLE', { source: 'status', code: 131031, wamid: 'w1' }));
    expect(s.state.closure).toMatchObject({ cause: 'failed_status', code: 131031, wamid: 'w1' });
  });

  it('an ACCOUNT_OFFBOARDED joining a gate closed by a send error takes over the closure', () => {
    const w = waba('offboarded', { closure: { cause: 'send_error', at: SINCE, code: 133010 } });
    const s = step(w, event('ACCOUNT_OFFBOARDED', { metaTime: 9 }));
    expect(s.state.closure).toEqual({ cause: 'offboarded', at: NOW_ISO, metaTime: 9 });
  });

  it('PARTNER_REMOVED records partner_removed and disconnection_info', () => {
    const info = { reason: 'PRIMARY_INACTIVITY', initiatedBy: 'SYSTEM' };
    const s = step(waba('connected'), event('PARTNER_REMOVED', { ...FINAL, metaTime: 5, disconnectionInfo: info }));
    expect(s.state).toMatchObject({
      state: 'partner_removed',
      disconnectionInfo: info,
      closure: { cause: 'partner_removed', metaTime: 5, disconnectionInfo: info },
    });
  });

  describe('PARTNER_REMOVED as a pause (USER_RE_REGISTERED, or no reason given)', () => {
    const reregistered = { reason: 'USER_RE_REGISTERED', initiatedBy: 'USER' };

    it.each([
      ['USER_RE_REGISTERED', reregistered],
      ['no disconnection_info', undefined],
    ] as const)('%s: a connected WABA is offboarded (gate closed, sends queue, nothing failed)', (_, info) => {
      const s = step(
        waba('connected'),
        event('PARTNER_REMOVED', { metaTime: 5, ...(info ? { disconnectionInfo: info } : {}) }),
      );
      expect(s.state).toMatchObject({ state: 'offboarded', escalationLevel: 0, closure: { cause: 'offboarded' } });
      expect(s.state.closure?.detail).toMatch(/^PARTNER_REMOVED \(.*\); paused until ACCOUNT_RECONNECTED/);
      expect(lastEvent(s)).toMatchObject({ type: 'PARTNER_REMOVED', outcome: 'applied' });
      expect(types(s)).not.toContain('failQueue');
      if (info) expect(s.state.disconnectionInfo).toEqual(info);
    });

    it('after ACCOUNT_OFFBOARDED: joins the open offboarding; ACCOUNT_RECONNECTED then drains', () => {
      const off = step(waba('connected'), event('ACCOUNT_OFFBOARDED', { metaTime: 10 }));
      const removed = step(off.state, event('PARTNER_REMOVED', { metaTime: 11, disconnectionInfo: reregistered }));
      expect(removed.state.state).toBe('offboarded');
      expect(lastEvent(removed)).toMatchObject({ type: 'PARTNER_REMOVED', outcome: 'joined the open offboarding' });
      const back = step(removed.state, event('ACCOUNT_RECONNECTED', { metaTime: 12 }));
      expect(back.state.state).toBe('draining');
      expect(back.commands.at(-1)).toEqual({ type: 'startDrain', mode: 'reconnected', onlyIfQueued: true });
    });

    it('before ACCOUNT_OFFBOARDED: the offboarding joins it; a reconnection drains', () => {
      const removed = step(
        waba('connected'),
        event('PARTNER_REMOVED', { metaTime: 10, disconnectionInfo: reregistered }),
      );
      const off = step(removed.state, event('ACCOUNT_OFFBOARDED', { metaTime: 11 }));
      expect(off.state.state).toBe('offboarded');
      expect(step(off.state, event('ACCOUNT_RECONNECTED', { metaTime: 12 })).state.state).toBe('draining');
    });

    it.each([
      'ACCOUNT_DISCONNECTED',
      'BUSINESS_DOWNGRADE',
      'CHANGE_NUMBER',
      'COMPANION_INACTIVITY',
      'PRIMARY_INACTIVITY',
    ])('%s is final: partner removed, the queue failed', (reason) => {
      const s = step(waba('offboarded'), event('PARTNER_REMOVED', { disconnectionInfo: { reason } }));
      expect(s.state.state).toBe('partner_removed');
      expect(types(s)).toContain('failQueue');
    });

    it('an escalation alert names what closed the gate', () => {
      const removed = step(waba('connected'), event('PARTNER_REMOVED', { disconnectionInfo: reregistered }));
      const level = step(removed.state, { kind: 'escalation', level: 1 });
      const a = level.commands.find((c) => c.type === 'alert');
      if (a?.type !== 'alert') throw new Error('expected an alert');
      expect(alertContent(a.alert, { queued: 2, failed: 0 }).text).toContain('PARTNER_REMOVED (USER_RE_REGISTERED');
    });
  });

  it('force_abandon records cause operator', () => {
    const s = step(waba('offboarded', { closure: { cause: 'offboarded', at: SINCE } }), {
      kind: 'operator',
      action: { action: 'force_abandon', reason: 'client left' },
    });
    expect(s.state.closure).toMatchObject({ cause: 'operator', detail: 'force_abandon: client left; was offboarded' });
  });

  it('a reconnection clears the closure into lastReopen and remembers when', () => {
    const s = step(waba('offboarded', { closure: { cause: 'offboarded', at: SINCE } }), event('ACCOUNT_RECONNECTED'));
    expect(s.state.closure).toBeUndefined();
    expect(s.state).toMatchObject({
      state: 'draining',
      lastReopen: { cause: 'reconnected', at: NOW_ISO, closedBy: 'offboarded' },
      lastReconnectedAt: NOW,
    });
  });

  it('an internal event caused before the last reconnection is stale and leaves the gate open', () => {
    const w = waba('connected', { lastReconnectedAt: NOW - 1_000 });
    const s = step(w, event('SEND_ACCOUNT_UNUSABLE', { source: 'status', causeTime: NOW - 2_000 }));
    expect(s.state.state).toBe('connected');
    expect(lastEvent(s)?.outcome).toBe('stale: caused before the last reconnection');
    expect(s.commands).toEqual(recordOnly(s));
  });

  it('an internal event caused after the last reconnection closes the gate', () => {
    const w = waba('connected', { lastReconnectedAt: NOW - 1_000 });
    const s = step(w, event('SEND_ACCOUNT_UNUSABLE', { source: 'send', causeTime: NOW - 500 }));
    expect(s.state.state).toBe('offboarded');
  });

  it('a usable probe of an offboarded WABA reopens with reconnected_by_probe, alerts and drains', () => {
    const w = waba('offboarded', { closure: { cause: 'offboarded', at: SINCE } });
    const s = step(w, usable, ctx({ settings: probeSettings }));
    expect(s.state).toMatchObject({
      state: 'draining',
      lastReopen: { cause: 'reconnected_by_probe', closedBy: 'offboarded' },
    });
    expect(types(s)).toEqual(['persist', 'upsertSearchAttributes', 'alert', 'startDrain']);
    const a = s.commands[2];
    if (a?.type !== 'alert') throw new Error('expected an alert');
    expect(alertContent(a.alert, { queued: 3, failed: 0 }).title).toBe(
      "Gate reopened by a probe: Meta's webhook never arrived",
    );
  });

  it('a usable probe of a gate closed by a send error waits for the grace period', () => {
    const closure = { cause: 'send_error' as const, at: new Date(NOW - 60_000).toISOString(), code: 133010 };
    const early = step(waba('offboarded', { closure }), usable, ctx({ settings: probeSettings }));
    expect(early).toEqual({ state: early.state, commands: [] });
    expect(early.state.state).toBe('offboarded');
    const late = step(waba('offboarded', { closure }), usable, ctx({ now: NOW + 60_000, settings: probeSettings }));
    expect(late.state).toMatchObject({
      state: 'draining',
      lastReopen: { cause: 'probe_after_grace', closedBy: 'send_error' },
    });
  });

  it.each(['unusable', 'unknown'] as const)('a %s probe changes nothing and writes nothing', (verdict) => {
    const w = waba('offboarded', { closure: { cause: 'offboarded', at: SINCE } });
    expect(step(w, { kind: 'probed', result: { verdict, detail: 'x' } }, ctx({ settings: probeSettings }))).toEqual({
      state: w,
      commands: [],
    });
  });

  it.each(['connected', 'draining', 'partner_removed', 'reconnect_abandoned'] as const)(
    'a usable probe of a %s WABA changes nothing',
    (state) => {
      expect(step(waba(state), usable, ctx({ settings: probeSettings })).commands).toEqual([]);
    },
  );

  it('PARTNER_ADDED brings a removed WABA back to connected, alerts, and drains strays if any', () => {
    const w = waba('partner_removed', {
      closure: { cause: 'partner_removed', at: SINCE },
      lastPartnerRemovedMetaTime: 100,
    });
    const s = step(w, event('PARTNER_ADDED', { metaTime: 200 }));
    expect(s.state).toMatchObject({
      state: 'connected',
      lastPartnerAddedMetaTime: 200,
      lastReopen: { cause: 'partner_added', closedBy: 'partner_removed' },
    });
    expect(s.state.closure).toBeUndefined();
    expect(types(s)).toEqual(['persist', 'upsertSearchAttributes', 'alert', 'startDrain']);
    expect(s.commands.at(-1)).toEqual({ type: 'startDrain', mode: 'stray', onlyIfQueued: true });
  });

  it('a PARTNER_ADDED older than the removal is stale', () => {
    const w = waba('partner_removed', { lastPartnerRemovedMetaTime: 300 });
    const s = step(w, event('PARTNER_ADDED', { metaTime: 200 }));
    expect(s.state.state).toBe('partner_removed');
    expect(lastEvent(s)?.outcome).toBe('stale: older than the removal');
  });

  it('a PARTNER_REMOVED older than the last PARTNER_ADDED is stale', () => {
    const s = step(
      waba('connected', { lastPartnerAddedMetaTime: 300 }),
      event('PARTNER_REMOVED', { ...FINAL, metaTime: 200 }),
    );
    expect(s.state.state).toBe('connected');
    expect(lastEvent(s)?.outcome).toBe('stale: older than the last PARTNER_ADDED');
  });

  it('PARTNER_ADDED on a WABA that was not removed is remembered only', () => {
    const s = step(waba('connected'), event('PARTNER_ADDED', { metaTime: 10 }));
    expect(s.state).toMatchObject({ state: 'connected', lastPartnerAddedMetaTime: 10 });
    expect(s.commands).toEqual(recordOnly(s));
  });

  it('reinstate brings a removed WABA back to connected; refused elsewhere', () => {
    const s = step(waba('partner_removed'), {
      kind: 'operator',
      action: { action: 'reinstate', reason: 're-onboarded' },
    });
    expect(s.state).toMatchObject({ state: 'connected', lastReopen: { cause: 'reinstated' } });
    expect(refusal(waba('partner_removed'), { action: 'reinstate', reason: 'r' })).toBeUndefined();
    expect(refusal(waba('offboarded'), { action: 'reinstate', reason: 'r' })).toBe(
      'reinstate applies to a partner-removed WABA, not to one that is offboarded',
    );
  });

  it('with probing, an offboarded WABA probes first at a level (the sweep probes between levels)', () => {
    const since = Date.parse(SINCE);
    const w = waba('offboarded', { escalationLevel: 0 });
    expect(nextWakeUp(w, probeSettings, false, since + 4.5 * 60_000)).toMatchObject({
      kind: 'escalation',
      level: 1,
      at: since + 5 * 60_000,
      probeFirst: true,
    });
    expect(nextWakeUp(w, settings, false, NOW)).toEqual({ kind: 'escalation', level: 1, at: since + 5 * 60_000 });
  });

  it('an auth failure closes with cause credentials; the first usable probe reopens it at once', () => {
    const s1 = step(
      waba('connected'),
      event('SEND_ACCOUNT_UNUSABLE', { source: 'send', code: 190, errorReason: 'auth_failed' }),
    );
    expect(s1.state.closure).toMatchObject({ cause: 'credentials', code: 190 });
    const s2 = step(s1.state, usable, ctx({ now: NOW + 1, settings: probeSettings }));
    expect(s2.state).toMatchObject({ state: 'draining', lastReopen: { cause: 'credentials_restored' } });
  });

  it('a gate closed for credentials is never abandoned: the final level only alerts', () => {
    const w = waba('offboarded', { escalationLevel: 2, closure: { cause: 'credentials', at: SINCE } });
    const s = step(w, { kind: 'escalation', level: 3 });
    expect(s.state).toMatchObject({ state: 'offboarded', escalationLevel: 3 });
    expect(types(s)).not.toContain('failQueue');
  });
});

describe('late failures: a failed status naming our send queues that message again', () => {
  const failed = (extra: Partial<LifecycleEvent> = {}) =>
    event('SEND_ACCOUNT_UNUSABLE', {
      source: 'status',
      wamid: 'wamid.A',
      sendKey: 'msg_1',
      code: 131031,
      causeTime: NOW - 500,
      ...extra,
    });
  const requeueOf = (s: Step) => s.commands.find((c) => c.type === 'requeueLate');

  it('closing the gate: the message is queued again after the closure is written', () => {
    const s = step(waba('connected'), failed());
    expect(s.state.state).toBe('offboarded');
    expect(requeueOf(s)).toEqual({
      type: 'requeueLate',
      failure: { wabaId: 'W1', sendKey: 'msg_1', wamid: 'wamid.A', code: 131031, failedAt: NOW - 500 },
    });
    expect(types(s).indexOf('requeueLate')).toBeGreaterThan(types(s).indexOf('persist'));
    expect(types(s)).not.toContain('startDrain');
  });

  it('while a drain runs: queued before the drain is stopped (cancelDrain stays last)', () => {
    const s = step(waba('draining'), failed(), ctx({ drainRunning: true }));
    expect(types(s)).toEqual(['requeueLate', 'cancelDrain']);
  });

  it('a stale status leaves the gate open, queues the message again and drains it', () => {
    const s = step(waba('connected', { lastReconnectedAt: NOW - 100 }), failed());
    expect(s.state.state).toBe('connected');
    expect(lastEvent(s)?.outcome).toBe('stale: caused before the last reconnection');
    expect(types(s).slice(-3)).toEqual(['requeueLate', 'countQueued', 'startDrain']);
    expect(s.commands[s.commands.length - 1]).toEqual({ type: 'startDrain', mode: 'stray', onlyIfQueued: true });
  });

  it('joining an open offboarding: queued again, drained at the reopening', () => {
    const s = step(waba('offboarded', { closure: { cause: 'offboarded', at: SINCE } }), failed());
    expect(types(s).slice(-1)).toEqual(['requeueLate']);
  });

  it('not for a removed WABA, not without our send key, not for a send error', () => {
    expect(requeueOf(step(waba('partner_removed'), failed()))).toBeUndefined();
    expect(requeueOf(step(waba('connected'), failed({ sendKey: undefined })))).toBeUndefined();
    expect(requeueOf(step(waba('connected'), failed({ source: 'send' })))).toBeUndefined();
  });
});

describe('lifecycle machine: a drain paused by a refused token', () => {
  const paused: DrainResult = {
    sent: 1,
    failed: 0,
    expired: 0,
    alreadySettled: 0,
    stopped: 'credentials',
    detail: 'code 190',
  };

  it('while draining: connected again (gate open, no closure, no alert, no stray drain): the token waits, not the WABA', () => {
    const s = step(waba('draining', { escalationLevel: 2 }), { kind: 'drainEnded', outcome: paused });
    expect(s.state).toMatchObject({ state: 'connected', escalationLevel: 0 });
    expect(s.state.closure).toBeUndefined();
    expect(lastEvent(s)).toMatchObject({ outcome: 'drain paused: Meta refuses the token', detail: 'code 190' });
    expect(types(s)).toEqual(['persist', 'upsertSearchAttributes']);
  });

  it('while connected (a stray drain): recorded, nothing else', () => {
    const s = step(waba('connected'), { kind: 'drainEnded', outcome: paused });
    expect(s.state.state).toBe('connected');
    expect(types(s)).toEqual(['persist']);
  });
});
