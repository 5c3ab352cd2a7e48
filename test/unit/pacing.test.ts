import {
  ARRIVAL_JITTER_MS,
  CLOCK_ERROR_MS,
  LATE_TOLERANCE_MS,
  capSlotMs,
  maxSendsPerWindow,
} from '../../src/sending/pacing';

describe('cap slots', () => {
  it.each([1, 2, 5, 20, 80, 250, 1000])(
    'at %i msg/s, no window of 1,000 ms plus the jitter each way meets more than the cap, and at least 87%% of it is used',
    (mps) => {
      expect(maxSendsPerWindow(mps, 1000 + 2 * ARRIVAL_JITTER_MS)).toBeLessThanOrEqual(mps);
      expect(1000 / capSlotMs(mps)).toBeGreaterThanOrEqual(0.87 * mps);
    },
  );

  it('spaces a coexistence number (20 msg/s) by 56.9 ms (87.9% of the cap)', () => {
    expect(capSlotMs(20)).toBeCloseTo(56.9, 1);
  });

  it('holds with workers clocks up to the tolerance apart each way, and not with 100 ms between them (slots on own clocks)', () => {
    for (const mps of [1, 2, 5, 20, 80, 250, 1000])
      expect(
        maxSendsPerWindow(mps, 1000 + 2 * ARRIVAL_JITTER_MS, LATE_TOLERANCE_MS, 2 * CLOCK_ERROR_MS),
      ).toBeLessThanOrEqual(mps);
    expect(maxSendsPerWindow(20, 1000 + 2 * ARRIVAL_JITTER_MS, LATE_TOLERANCE_MS, 100)).toBe(22);
  });
});
