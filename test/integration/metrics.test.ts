import { sendWorkflowId } from '../../src/contracts';
import { eventually, startStack, uniqueDigits, type Stack } from '../support/stack';

/**
 * /metrics after a scripted offboard → send → reconnect cycle on the real stack: the worker runs in
 * this process and counts into the same registry the app's /metrics renders (in production each
 * process exposes its own; docs/operations.md, "Metrics").
 */
describe('metrics on the real stack', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack();
  });
  afterAll(async () => {
    await stack?.stop();
  });

  async function scrape(): Promise<string> {
    const res = await fetch(`${stack.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    return res.text();
  }
  /** `name{labels}` with its labels sorted (the exposition format does not order them). */
  const canonical = (series: string): string => {
    const [, name, labels = ''] = /^([^{]*)(?:\{(.*)\})?$/.exec(series)!;
    return `${name}{${(labels.match(/\w+="(?:[^"\\]|\\.)*"/g) ?? []).sort().join(',')}}`;
  };
  /** The value of one sample (`name{labels}`, labels in any order), or undefined when absent. */
  function sample(text: string, series: string): number | undefined {
    const want = canonical(series);
    const line = text.split('\n').find((l) => !l.startsWith('#') && canonical(l.slice(0, l.lastIndexOf(' '))) === want);
    return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  const text = (phoneNumberId: string, body: string) => ({
    phoneNumberId,
    to: '15550002222',
    type: 'text',
    text: { body },
  });

  it('shows gate states, queue depth and age, sends by outcome and Meta code, drained messages, offboarding durations and webhook latency', async () => {
    const wabaId = uniqueDigits();
    const phone = uniqueDigits('2');
    await stack.register(phone, wabaId, { coexistence: true });
    const before = await scrape();
    expect(sample(before, 'coexist_relay_wabas{state="offboarded"}')).toBe(0);
    expect(sample(before, 'coexist_relay_queue_depth_messages')).toBe(0);
    expect(sample(before, 'coexist_relay_gates_closed{cause="offboarded"}')).toBe(0);

    // Offboard: the gate closes and three sends queue.
    expect(await stack.accountUpdate(wabaId, 'ACCOUNT_OFFBOARDED')).toBe(200);
    await eventually(async () => (await stack.rt.c.wabas.findOne({ _id: wabaId }))?.state === 'offboarded');
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await stack.send(text(phone, `q${i}`))).json.id as string);
    await eventually(async () => (await stack.rt.c.queue.countDocuments({ wabaId })) === 3);
    await new Promise((r) => setTimeout(r, 1_100));
    const offboarded = await scrape();
    expect(sample(offboarded, 'coexist_relay_wabas{state="offboarded"}')).toBe(1);
    expect(sample(offboarded, 'coexist_relay_wabas{state="connected"}')).toBe(0);
    expect(sample(offboarded, 'coexist_relay_gates_closed{cause="offboarded"}')).toBe(1);
    expect(sample(offboarded, 'coexist_relay_gates_closed{cause="send_error"}')).toBe(0);
    expect(sample(offboarded, 'coexist_relay_queue_depth_messages')).toBe(3);
    expect(sample(offboarded, 'coexist_relay_queue_oldest_age_seconds')).toBeGreaterThanOrEqual(1);
    expect(sample(offboarded, 'coexist_relay_offboarded_longest_seconds')).toBeGreaterThanOrEqual(1);

    // Reconnect: the queue drains (two sent, one refused by Meta with 131026) and the gate reopens.
    stack.sim.scriptErrors(phone, [{ code: 131026, details: 'Message undeliverable' }]);
    expect(await stack.accountUpdate(wabaId, 'ACCOUNT_RECONNECTED')).toBe(200);
    await eventually(async () => (await stack.rt.c.wabas.findOne({ _id: wabaId }))?.state === 'connected');
    const outcomes = await Promise.all(
      ids.map((id) => stack.rt.temporal.workflow.getHandle(sendWorkflowId(id)).result()),
    );
    expect(outcomes.map((o) => o.status).sort()).toEqual(['failed', 'sent', 'sent']);
    // And one direct send with the gate open.
    const direct = (await stack.send(text(phone, 'direct'))).json.id as string;
    expect((await stack.rt.temporal.workflow.getHandle(sendWorkflowId(direct)).result()).status).toBe('sent');

    const after = await scrape();
    expect(sample(after, 'coexist_relay_wabas{state="offboarded"}')).toBe(0);
    expect(sample(after, 'coexist_relay_wabas{state="connected"}')).toBe(1);
    expect(sample(after, 'coexist_relay_gates_closed{cause="offboarded"}')).toBe(0);
    expect(sample(after, 'coexist_relay_queue_depth_messages')).toBe(0);
    expect(sample(after, 'coexist_relay_queue_oldest_age_seconds')).toBe(0);
    // Both deliveries handed over (no FORWARD_TARGETS here): nothing left in the outbox.
    await eventually(async () => sample(await scrape(), 'coexist_relay_outbox_pending_deliveries') === 0);
    expect(sample(after, 'coexist_relay_forwards{state="dead"}')).toBe(0);
    expect(sample(after, 'coexist_relay_sends_total{outcome="sent",error_code="none"}')).toBe(3);
    expect(sample(after, 'coexist_relay_sends_total{outcome="failed",error_code="131026"}')).toBe(1);
    expect(sample(after, 'coexist_relay_queue_settled_total{outcome="sent"}')).toBe(2);
    expect(sample(after, 'coexist_relay_queue_settled_total{outcome="failed"}')).toBe(1);
    // The offboarding (over a second: the wait above) ended when the WABA went to draining.
    expect(sample(after, 'coexist_relay_offboarded_duration_seconds_count{to="draining"}')).toBe(1);
    expect(sample(after, 'coexist_relay_offboarded_duration_seconds_sum{to="draining"}')).toBeGreaterThanOrEqual(1);
    expect(sample(after, 'coexist_relay_offboarded_duration_seconds_bucket{to="draining",le="60"}')).toBe(1);
    // Two account_update deliveries, both acknowledged 200; the webhook counters are in the same exposition.
    expect(sample(after, 'coexist_relay_webhook_ack_duration_seconds_count{code="200"}')).toBe(2);
    expect(sample(after, 'coexist_relay_webhook_ack_duration_seconds_bucket{code="200",le="+Inf"}')).toBe(2);
    expect(sample(after, 'coexist_relay_webhook_accepted_total')).toBe(2);
    expect(sample(after, 'coexist_relay_webhook_account_updates_total{event="ACCOUNT_OFFBOARDED"}')).toBe(1);
    expect(after).toMatch(/^# TYPE coexist_relay_sends_total counter$/m);
    expect(after).toMatch(/^# TYPE coexist_relay_webhook_ack_duration_seconds histogram$/m);
    // And prom-client's process metrics.
    expect(sample(after, 'process_cpu_user_seconds_total')).toBeGreaterThan(0);
    expect(sample(after, 'nodejs_heap_size_used_bytes')).toBeGreaterThan(0);
    expect(after).toMatch(/^nodejs_eventloop_lag_p99_seconds \d/m);
  });

  it("shows the worker's pacing clock: its offset to the database clock, the measurement's error bound, no alert", async () => {
    const text = await scrape();
    // The database runs on this host: the same clock, so the offset is within the error bound
    // (plus a millisecond: this process's clock is the monotonic one since it started).
    const bound = sample(text, 'coexist_relay_pacing_clock_error_bound_seconds')!;
    expect(bound).toBeLessThanOrEqual(0.004);
    expect(Math.abs(sample(text, 'coexist_relay_pacing_clock_offset_seconds')!)).toBeLessThanOrEqual(bound + 0.001);
    expect(sample(text, 'coexist_relay_pacing_clock_alerting')).toBe(0);
  });
});
