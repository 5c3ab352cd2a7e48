import { ARRIVAL_JITTER_MS, capSlotMs, maxSendsPerWindow } from '../../src/sending/pacing';

describe('cap slots', () => {
  it.each([1, 2, 5, 20, 80, 250, 1000])(
    'at %i msg/s, no window of 1,000 ms plus the jitter each way meets more than the cap, and at least 87%% of it is used',
    (mps) => {
      expect(maxSendsPerWindow(mps, 1000 + 2 * ARRIVAL_JITTER_MS)).toBeLessThanOrEqual(mps);
      expect(1000 / capSlotMs(mps)).toBeGreaterThanOrEqual(0.87 * mps);
    },
  );

  it('spaces a coexistence number (20 msg/s) by 56.5 ms', () => {
    expect(capSlotMs(20)).toBeCloseTo(56.5, 1);
  });
});
