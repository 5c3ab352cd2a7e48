import { classifyCommand, dbDelta, sumCounts } from '../../bench/lib/cost';

const started = (commandName: string, command: Record<string, unknown>) => ({ commandName, command });

describe("bench:cost's command counting", () => {
  it('counts each document of an insert as a write statement (an insertMany of 5 is 5)', () => {
    const documents = Array.from({ length: 5 }, (_, i) => ({ _id: i }));
    expect(classifyCommand(started('insert', { insert: 'queue', documents }))).toEqual({
      kind: 'write',
      statements: 5,
      key: 'insert queue',
    });
  });

  it('counts each statement of an update or delete, and a findAndModify as one', () => {
    expect(classifyCommand(started('update', { update: 'wabas', updates: [{}, {}] })).statements).toBe(2);
    expect(classifyCommand(started('delete', { delete: 'send_slots', deletes: [{}, {}, {}] })).statements).toBe(3);
    expect(classifyCommand(started('findAndModify', { findAndModify: 'messages' }))).toEqual({
      kind: 'write',
      statements: 1,
      key: 'findAndModify messages',
    });
  });

  it('counts finds, aggregates, counts and getMores as reads (a getMore by its collection), the rest as other', () => {
    expect(classifyCommand(started('find', { find: 'queue' }))).toEqual({
      kind: 'read',
      statements: 1,
      key: 'find queue',
    });
    expect(classifyCommand(started('aggregate', { aggregate: 'queue' })).kind).toBe('read');
    expect(classifyCommand(started('count', { count: 'queue' })).kind).toBe('read');
    expect(classifyCommand(started('getMore', { getMore: 42, collection: 'queue' })).key).toBe('getMore queue');
    expect(classifyCommand(started('createIndexes', { createIndexes: 'queue' })).kind).toBe('other');
    expect(classifyCommand(started('ping', { ping: 1 })).key).toBe('ping');
  });

  it('takes the difference per source and leaves out what did not move', () => {
    const before = { service: { writes: 1, reads: 2, other: 0, byKey: { 'insert outbox': 1, 'find outbox': 2 } } };
    const after = {
      service: { writes: 1, reads: 5, other: 0, byKey: { 'insert outbox': 1, 'find outbox': 5 } },
      'activity admit': { writes: 2, reads: 0, other: 0, byKey: { 'insert messages': 2 } },
    };
    const delta = dbDelta(before, after);
    expect(delta).toEqual({
      service: { writes: 0, reads: 3, other: 0, byKey: { 'find outbox': 3 } },
      'activity admit': { writes: 2, reads: 0, other: 0, byKey: { 'insert messages': 2 } },
    });
    expect(sumCounts(Object.values(delta))).toEqual({
      writes: 2,
      reads: 3,
      other: 0,
      byKey: { 'find outbox': 3, 'insert messages': 2 },
    });
  });
});
