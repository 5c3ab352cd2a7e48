import { eventually, uniqueDigits, type Stack } from '../support/stack';
import { finalOutcome as finalOutcomeOf, registerNumber, sendAccepted, startInboundStack } from '../support/customers';

/** Customers named by their business-scoped user id (BSUID) on the real stack. */
describe('business-scoped user ids', () => {
  let stack: Stack;
  const HOUR = 3_600_000;

  beforeAll(async () => {
    stack = await startInboundStack();
  });
  afterAll(async () => {
    await stack?.stop();
  });

  const setup = () => registerNumber(stack);
  const bsuid = () => `US.${uniqueDigits('9')}`;
  const text = (phone: string, named: Record<string, string>) => ({
    phoneNumberId: phone,
    type: 'text',
    text: { body: 'your order shipped' },
    ...named,
  });
  const send = (body: Record<string, unknown>) => sendAccepted(stack, body);
  const finalOutcome = (id: string) => finalOutcomeOf(stack, id);
  const acceptedFrom = (phone: string) => stack.sim.log.accepted.filter((m) => m.phoneNumberId === phone);

  it('a BSUID recipient queued across a pause reaches the simulator as recipient', async () => {
    const { wabaId, phone } = await setup();
    const user = bsuid();
    expect(await stack.accountUpdate(wabaId, 'ACCOUNT_OFFBOARDED')).toBe(200);
    await eventually(async () => (await stack.rt.c.wabas.findOne({ _id: wabaId }))?.state === 'offboarded');
    const id = await send(text(phone, { recipient: user }));
    await eventually(async () => (await stack.message(id))?.status === 'queued');
    expect(await stack.accountUpdate(wabaId, 'ACCOUNT_RECONNECTED')).toBe(200);
    expect(await finalOutcome(id)).toMatchObject({ status: 'sent' });
    const [got] = acceptedFrom(phone);
    expect(got?.body).toMatchObject({ recipient: user });
    expect(got?.body).not.toHaveProperty('to');
  });

  it('a BSUID the service saw beside a phone number is keyed on that number: sent as to, and the window applies', async () => {
    const { phone } = await setup();
    const recent = { phone: uniqueDigits('1'), user: bsuid() };
    const old = { phone: uniqueDigits('1'), user: bsuid() };
    await stack.sim.inbound(phone, recent.phone, { agoMs: HOUR, userId: recent.user });
    await stack.sim.inbound(phone, old.phone, { agoMs: 25 * HOUR, userId: old.user });

    const sent = await send(text(phone, { recipient: recent.user }));
    expect(await finalOutcome(sent)).toMatchObject({ status: 'sent' });
    expect(acceptedFrom(phone).map((m) => m.body.to)).toEqual([recent.phone]);

    const held = await send(text(phone, { recipient: old.user }));
    expect(await finalOutcome(held)).toMatchObject({ status: 'failed', reason: 'service_window_closed' });
    expect(acceptedFrom(phone)).toHaveLength(1);

    // Both named: `to` wins.
    const both = await send(text(phone, { to: recent.phone, recipient: bsuid() }));
    expect(await finalOutcome(both)).toMatchObject({ status: 'sent' });
    expect(acceptedFrom(phone).map((m) => m.body.to)).toEqual([recent.phone, recent.phone]);
  });
});
