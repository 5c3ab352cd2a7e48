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
 * What `DRAIN_ORDER=recipient` (the default) promises about the queue's order at the receiver
 * beyond each recipient's own (checked apart): the drain reserves each message's start in the
 * queue's sequence, and this worker's sends of a number leave in the order of their starts, except
 * a message whose previous message to the same recipient has not settled within `RECIPIENT_WAIT_MS`
 * (500 ms, activities/drain.ts): that one waits for it on its own, for as long as it takes, and the
 * messages after it go on. How far it then moves is not bounded by the code: the previous bound (4
 * places, after 1cab6d7 saw q8 arrive before q7 while q7 waited for q4) was what loaded runs had
 * shown. What is bounded: a recipient's first message in the queue waits for nothing, so no message
 * queued after it arrives before it. `queued`: ids in queue order with their recipients (retried
 * sends left out: a retry takes a new start); `arrivals`: the client ids as they reached the
 * receiver. Returns, for the log, how many of `queued` were overtaken and the most places one moved.
 */
export function expectRecipientFirstsInQueueOrder(
  queued: readonly { id: string; to: string }[],
  arrivals: readonly (string | undefined)[],
): { overtaken: number; maxPlaces: number } {
  const ids = queued.map((m) => m.id);
  const got = firstArrivals(arrivals, ids);
  expect(got).toHaveLength(ids.length);
  const place = new Map(got.map((id, i) => [id, i]));
  const seen = new Set<string>();
  const overtakenFirsts: string[] = [];
  let overtaken = 0;
  let maxPlaces = 0;
  // The earliest arrival place among the messages queued after each index.
  const earliestAfter: number[] = [];
  for (let i = ids.length - 1, min = Infinity; i >= 0; i--) {
    earliestAfter[i] = min;
    min = Math.min(min, place.get(ids[i]!)!);
  }
  for (const [i, m] of queued.entries()) {
    const at = place.get(m.id)!;
    if (earliestAfter[i]! < at) {
      overtaken++;
      if (!seen.has(m.to)) overtakenFirsts.push(`${m.id} (queued ${i}, arrived ${at})`);
    }
    maxPlaces = Math.max(maxPlaces, at - i);
    seen.add(m.to);
  }
  expect(overtakenFirsts).toEqual([]);
  return { overtaken, maxPlaces };
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
