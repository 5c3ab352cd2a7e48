import type { EventLogEntry, WabaState } from '../../../workflows/contracts';
import type { Collections, WabaDoc } from './db';

/** How many recent events a WABA document keeps. */
export const EVENT_LOG_LENGTH = 20;

/** The WABA document as a plain snapshot (no `_id`), the shape the lifecycle workflow carries. */
export type WabaSnapshot = Omit<WabaDoc, '_id'> & { wabaId: string };

/** A WABA we have never seen: connected, gate open. */
export function freshWaba(wabaId: string, now: string): WabaSnapshot {
  return { wabaId, state: 'connected', since: now, escalationLevel: 0, events: [], updatedAt: now };
}

export async function loadWaba(c: Collections, wabaId: string, now: string): Promise<WabaSnapshot> {
  const doc = await c.wabas.findOne({ _id: wabaId });
  if (!doc) return freshWaba(wabaId, now);
  const { _id, ...rest } = doc;
  return { ...rest, wabaId: _id };
}

/** Replaces the WABA document. Only the WABA's lifecycle workflow calls this (single writer). */
export async function saveWaba(c: Collections, snapshot: WabaSnapshot): Promise<void> {
  const { wabaId, ...rest } = snapshot;
  const events: EventLogEntry[] = rest.events.slice(-EVENT_LOG_LENGTH);
  await c.wabas.replaceOne({ _id: wabaId }, { ...rest, events }, { upsert: true });
}

/** The send gate is open only while the WABA is connected. */
export const gateOpen = (state: WabaState | undefined): boolean => state === undefined || state === 'connected';
