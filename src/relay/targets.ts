import { z } from 'zod';
import { isSigningSecret } from './signing';

/**
 * Downstream endpoints that receive every Meta delivery (`FORWARD_TARGETS`, a JSON array), each
 * optionally filtered by change field and WABA. The one place that decides which target wants a
 * delivery.
 */
export const forwardTargetSchema = z
  .object({
    /** Short stable name: it keys the target's progress, so renaming a target starts it afresh. */
    name: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,39}$/, 'lowercase letters, digits, - and _ (1–40)'),
    url: z.url(),
    /** Standard Webhooks secrets (`whsec_…`); several during a rotation, the newest first. */
    secrets: z.array(z.string().refine(isSigningSecret, 'must be a whsec_… secret of at least 24 bytes')).min(1),
    /** Only deliveries with a change of one of these fields (`messages`, `account_update`, …). */
    fields: z.array(z.string().min(1)).optional(),
    /** Only deliveries that name one of these WABAs. */
    wabaIds: z.array(z.string().regex(/^\d{1,32}$/)).optional(),
  })
  .strict();

export type ForwardTarget = z.output<typeof forwardTargetSchema>;

/** Parses `FORWARD_TARGETS`; names must be unique. */
export const forwardTargetsSchema = z
  .string()
  .default('[]')
  .transform((s, ctx): ForwardTarget[] => {
    let json: unknown;
    try {
      json = JSON.parse(s);
    } catch {
      ctx.addIssue({ code: 'custom', message: 'must be a JSON array of { name, url, secrets, fields?, wabaIds? }' });
      return z.NEVER;
    }
    const parsed = z.array(forwardTargetSchema).safeParse(json);
    if (!parsed.success) {
      const first = parsed.error.issues[0]!;
      ctx.addIssue({ code: 'custom', message: `${first.path.join('.') || '(root)'}: ${first.message}` });
      return z.NEVER;
    }
    const names = parsed.data.map((t) => t.name);
    if (new Set(names).size !== names.length) {
      ctx.addIssue({ code: 'custom', message: 'target names must be unique' });
      return z.NEVER;
    }
    return parsed.data;
  });

/** What a target filter looks at in a delivery. */
export interface DeliverySummary {
  fields: readonly string[];
  wabaIds: readonly string[];
}

/** True when `target` wants `delivery` (no filter: every delivery). */
export function wants(target: ForwardTarget, delivery: DeliverySummary): boolean {
  if (target.fields && !delivery.fields.some((f) => target.fields!.includes(f))) return false;
  if (target.wabaIds && !delivery.wabaIds.some((w) => target.wabaIds!.includes(w))) return false;
  return true;
}

/** Wait before retry `attempt` (1-based): 2 s doubling to at most 1 h. */
export function forwardBackoffMs(attempt: number): number {
  return Math.min(3_600_000, 2_000 * 2 ** Math.max(0, attempt - 1));
}
