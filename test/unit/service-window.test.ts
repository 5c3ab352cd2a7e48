import { SERVICE_WINDOW_MS, WINDOW_CLOSE_MARGIN_MS, decideForWindow, windowState } from '../../src/sending/window';
import type { MessageContent, TemplateBody } from '../../src/contracts';

const NOW = Date.parse('2026-12-06T12:00:00Z');
const secondsAgo = (ms: number) => Math.floor((NOW - ms) / 1000);
const HOUR = 3_600_000;
const text: MessageContent = { type: 'text', text: { body: 'your order shipped' } };
const template: MessageContent = { type: 'template', template: { name: 'order_update', language: { code: 'en' } } };
const fallback: TemplateBody = { name: 'reengage', language: { code: 'en_US' } };

describe('the customer service window: what the service knows', () => {
  it('knows nothing of a customer it never heard from (no record, or a record without times)', () => {
    expect(windowState(null, NOW)).toBe('unknown');
    expect(windowState({ _id: 'p#c' }, NOW)).toBe('unknown');
  });

  it('is open within 24 h of the last inbound message and closed after 24 h plus the margin', () => {
    expect(windowState({ _id: 'p#c', lastInboundAt: secondsAgo(23 * HOUR) }, NOW)).toBe('open');
    expect(windowState({ _id: 'p#c', lastInboundAt: secondsAgo(SERVICE_WINDOW_MS + 30_000) }, NOW)).toBe('open');
    expect(
      windowState({ _id: 'p#c', lastInboundAt: secondsAgo(SERVICE_WINDOW_MS + WINDOW_CLOSE_MARGIN_MS + 2_000) }, NOW),
    ).toBe('closed');
    expect(windowState({ _id: 'p#c', lastInboundAt: secondsAgo(25 * HOUR) }, NOW)).toBe('closed');
  });

  it("Meta's 131047 closes it until a newer inbound message, whatever the record said", () => {
    const refusedAt = secondsAgo(HOUR);
    expect(windowState({ _id: 'p#c', refusedAt }, NOW)).toBe('closed');
    expect(windowState({ _id: 'p#c', lastInboundAt: secondsAgo(2 * HOUR), refusedAt }, NOW)).toBe('closed');
    expect(windowState({ _id: 'p#c', lastInboundAt: secondsAgo(10 * 60_000), refusedAt }, NOW)).toBe('open');
  });
});

describe('the customer service window: what leaves', () => {
  it('a free-form message goes while the window is open or unknown (Meta decides)', () => {
    for (const state of ['open', 'unknown'] as const) {
      expect(decideForWindow(text, fallback, state)).toEqual({ kind: 'send', content: text, fallback: false });
    }
  });

  it('a free-form message to a closed window: its fallback template instead, else nothing', () => {
    expect(decideForWindow(text, fallback, 'closed')).toEqual({
      kind: 'send',
      content: { type: 'template', template: fallback },
      fallback: true,
    });
    expect(decideForWindow(text, undefined, 'closed')).toEqual({ kind: 'closed' });
  });

  it('a template is never held back', () => {
    expect(decideForWindow(template, undefined, 'closed')).toEqual({
      kind: 'send',
      content: template,
      fallback: false,
    });
    expect(decideForWindow(template, fallback, 'closed')).toMatchObject({ content: template, fallback: false });
  });
});
