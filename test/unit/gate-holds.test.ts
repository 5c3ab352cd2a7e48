import { GATE_HOLD_MAX_MS, holdCounts } from '../../src/lifecycle/gate-holds.store';
import { transition, type LifecycleState } from '../../src/lifecycle/machine';
import type { LifecycleEvent, LifecycleSettings } from '../../src/contracts';

/**
 * A gate hold counts until the WABA's workflow has handled its event (the WABA document's
 * `closingHandled`), or for at most `GATE_HOLD_MAX_MS`; nothing has to delete it.
 */
describe('gate holds: superseded by the handled event, not deleted', () => {
  const NOW = Date.parse('2026-12-06T12:00:00.000Z');
  const at = (msAgo: number): string => new Date(NOW - msAgo).toISOString();
  const hold = { eventKey: 'k2', receivedAt: at(1_000) };

  it('counts while the workflow has handled no closure, or only an older one', () => {
    expect(holdCounts(hold, undefined, NOW)).toBe(true);
    expect(holdCounts(hold, { key: 'k1', receivedAt: at(60_000) }, NOW)).toBe(true);
  });

  it('stops counting once its event, or one received at or after it, is handled', () => {
    expect(holdCounts(hold, { key: 'k2', receivedAt: hold.receivedAt }, NOW)).toBe(false);
    // A redelivery's hold carries the same key with a later receipt: handled all the same.
    expect(holdCounts({ eventKey: 'k2', receivedAt: at(10) }, { key: 'k2', receivedAt: at(1_000) }, NOW)).toBe(false);
    expect(holdCounts(hold, { key: 'k3', receivedAt: at(500) }, NOW)).toBe(false);
    expect(holdCounts(hold, { key: 'k3', receivedAt: hold.receivedAt }, NOW)).toBe(false);
  });

  it('never counts past GATE_HOLD_MAX_MS (a wrong "closed" is the costlier mistake)', () => {
    expect(holdCounts({ eventKey: 'k2', receivedAt: at(GATE_HOLD_MAX_MS) }, undefined, NOW)).toBe(false);
    expect(holdCounts({ eventKey: 'k2', receivedAt: at(GATE_HOLD_MAX_MS - 1) }, undefined, NOW)).toBe(true);
  });

  const settings: LifecycleSettings = {
    escalation: [{ level: 1, afterMs: 600_000, severity: 'warning' }],
    onAbandon: 'keep',
    alertSinks: ['log'],
  };
  const waba = (state: LifecycleState['state'], extra: Partial<LifecycleState> = {}): LifecycleState => ({
    wabaId: 'W1',
    state,
    since: at(3_600_000),
    escalationLevel: 0,
    events: [],
    updatedAt: at(3_600_000),
    ...extra,
  });
  const event = (type: LifecycleEvent['type'], key: string, extra: Partial<LifecycleEvent> = {}): LifecycleEvent => ({
    key,
    type,
    wabaId: 'W1',
    receivedAt: at(2_000),
    source: 'webhook',
    ...extra,
  });
  const persisted = (s: ReturnType<typeof transition>): LifecycleState | undefined =>
    s.commands.flatMap((c) => (c.type === 'persist' ? [c.waba] : [])).pop();

  it.each([
    ['applied', waba('connected'), event('ACCOUNT_OFFBOARDED', 'k-off')],
    [
      'stale (older than the last reconnection)',
      waba('connected', { lastReconnectedMetaTime: 200 }),
      event('ACCOUNT_OFFBOARDED', 'k-off', { metaTime: 100 }),
    ],
    ['a removal taken as a pause', waba('connected'), event('PARTNER_REMOVED', 'k-off')],
    ['joining an open offboarding', waba('offboarded'), event('ACCOUNT_OFFBOARDED', 'k-off')],
  ])('the machine saves the closure it handled, %s, so its hold stops counting', (_, before, e) => {
    const s = transition(before, { kind: 'event', event: e }, { now: NOW, settings, drainRunning: false });
    expect(persisted(s)?.closingHandled).toEqual({ key: 'k-off', receivedAt: e.receivedAt });
    expect(holdCounts({ eventKey: 'k-off', receivedAt: e.receivedAt }, persisted(s)?.closingHandled, NOW)).toBe(false);
  });

  it('a reconnection is not a closure: it leaves the last handled closure as it was', () => {
    const before = waba('offboarded', { closingHandled: { key: 'k-off', receivedAt: at(9_000) } });
    const s = transition(
      before,
      { kind: 'event', event: event('ACCOUNT_RECONNECTED', 'k-on') },
      { now: NOW, settings, drainRunning: false },
    );
    expect(persisted(s)?.closingHandled).toEqual({ key: 'k-off', receivedAt: at(9_000) });
  });
});
