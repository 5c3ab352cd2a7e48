import { pagerDutyEvent, slackMessage } from '../../src/alerts/alerts.activities';
import type { AlertInput } from '../../src/contracts';

const base: AlertInput = {
  wabaId: '1001',
  kind: 'escalated',
  level: 1,
  severity: 'page',
  title: 'T',
  text: 'x',
  state: 'offboarded',
  queued: 3,
  at: '2026-12-01T00:00:00.000Z',
};

describe('alert incidents: one PagerDuty dedup key per WABA offboarding, refused token or forward target', () => {
  it("keys a WABA's alerts by the WABA, and a token's or a target's by its own incident", () => {
    expect(pagerDutyEvent(base, 'rk').dedup_key).toBe('coexist-relay/waba/1001');
    const token = { ...base, kind: 'credentialsPaused', incident: 'token/GRAPH_API_TOKEN' };
    expect(pagerDutyEvent(token, 'rk').dedup_key).toBe('coexist-relay/token/GRAPH_API_TOKEN');
    const backlog = { ...base, kind: 'forwardBacklog', incident: 'forward/crm', wabaId: '' };
    const trigger = pagerDutyEvent(backlog, 'rk');
    expect(trigger).toMatchObject({ event_action: 'trigger', dedup_key: 'coexist-relay/forward/crm' });
    expect(trigger.payload).toMatchObject({ component: 'forward/crm', summary: 'T' });
    expect(slackMessage(backlog).text).toContain('(forward/crm)');
    expect(slackMessage(base).text).toContain('(WABA 1001, offboarded, level 1)');
  });

  it('resolves on a reconnection, a restored token and a cleared backlog, each its own incident only', () => {
    expect(pagerDutyEvent({ ...base, kind: 'reconnected' }, 'rk')).toEqual({
      routing_key: 'rk',
      event_action: 'resolve',
      dedup_key: 'coexist-relay/waba/1001',
    });
    expect(pagerDutyEvent({ ...base, kind: 'credentialsRestored', incident: 'token/T' }, 'rk')).toMatchObject({
      event_action: 'resolve',
      dedup_key: 'coexist-relay/token/T',
    });
    expect(pagerDutyEvent({ ...base, kind: 'forwardBacklogCleared', incident: 'forward/crm' }, 'rk')).toMatchObject({
      event_action: 'resolve',
      dedup_key: 'coexist-relay/forward/crm',
    });
    expect(pagerDutyEvent({ ...base, kind: 'forwardBacklog', incident: 'forward/crm' }, 'rk').event_action).toBe(
      'trigger',
    );
  });
});
