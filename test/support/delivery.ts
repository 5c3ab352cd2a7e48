import net from 'node:net';

/** A loopback port that was free a moment ago (for servers that need a fixed port across restarts). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** True while any process of the group `pgid` is alive. */
export function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The first arrival of each of `ids` in `arrivals` (ids in arrival order; repeats and others dropped). */
export function firstArrivals(arrivals: readonly (string | undefined)[], ids: readonly string[]): string[] {
  const wanted = new Set(ids);
  const seen = new Set<string>();
  return arrivals.filter((id): id is string => id !== undefined && wanted.has(id) && !seen.has(id) && !!seen.add(id));
}

/**
 * How far a queued message may move at the receiver under `DRAIN_ORDER=recipient` (the default):
 * a send held back for its recipient's previous answer lets later ones to other recipients pass.
 */
export const QUEUE_PLACES_SLACK = 4;

/**
 * Under `DRAIN_ORDER=recipient`: every one of `queued` (ids in queue order) first arrived within
 * `QUEUE_PLACES_SLACK` places of its queue position (`arrivals`: what reached the receiver, in order).
 */
export function expectNearQueueOrder(arrivals: readonly (string | undefined)[], queued: readonly string[]): void {
  const got = firstArrivals(arrivals, queued);
  expect(got).toHaveLength(queued.length);
  for (const [i, id] of queued.entries())
    expect([id, Math.abs(got.indexOf(id) - i) <= QUEUE_PLACES_SLACK]).toEqual([id, true]);
}

/**
 * What arrived at the simulator for one drain of `queued` (in acceptance order): nothing lost, and
 * per recipient the first arrivals in acceptance order. `byRecipient` and `clientIds` come from the
 * simulator's receiver statistics and accepted log of the number.
 */
export function expectDelivered(
  queued: readonly { id: string; to: string }[],
  byRecipient: Record<string, string[]>,
  clientIds: readonly (string | undefined)[],
): void {
  const ids = new Set(queued.map((m) => m.id));
  const unique = new Set(clientIds);
  expect([...unique].every((id) => id !== undefined && ids.has(id))).toBe(true);
  expect(unique.size).toBe(queued.length); // nothing lost
  for (const to of new Set(queued.map((m) => m.to))) {
    const expected = queued.filter((m) => m.to === to).map((m) => m.id);
    expect(firstArrivals(byRecipient[to] ?? [], expected)).toEqual(expected);
  }
}
