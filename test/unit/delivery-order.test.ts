import { expectRecipientFirstsInQueueOrder } from '../support/delivery';

/** The drain-order check the integration tests use for DRAIN_ORDER=recipient, on made-up arrivals. */
describe('expectRecipientFirstsInQueueOrder', () => {
  // q0..q8 over three recipients, as sending.test queues them (q7's previous message is q4).
  const queued = Array.from({ length: 9 }, (_, i) => ({ id: `q${i}`, to: `r${i % 3}` }));

  it('passes the queue in order and counts nothing overtaken', () => {
    expect(
      expectRecipientFirstsInQueueOrder(
        queued,
        queued.map((m) => m.id),
      ),
    ).toEqual({ overtaken: 0, maxPlaces: 0 });
  });

  it('lets a message that waited for its recipient previous one be overtaken (q8 before q7), and counts it', () => {
    const arrivals = ['q0', 'q1', 'q2', 'q3', 'q4', 'q5', 'q6', 'q8', 'q7'];
    expect(expectRecipientFirstsInQueueOrder(queued, arrivals)).toEqual({ overtaken: 1, maxPlaces: 1 });
  });

  it("fails when a recipient's first message is overtaken: it waited for nothing", () => {
    const arrivals = ['q0', 'q2', 'q1', 'q3', 'q4', 'q5', 'q6', 'q7', 'q8'];
    expect(() => expectRecipientFirstsInQueueOrder(queued, arrivals)).toThrow(/q1 \(queued 1, arrived 2\)/);
  });

  it('fails when a message never arrived', () => {
    expect(() => expectRecipientFirstsInQueueOrder(queued, ['q0', 'q1'])).toThrow();
  });
});
