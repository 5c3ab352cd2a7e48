/**
 * The harness gave us real servers: FerretDB speaks the MongoDB protocol and enforces unique
 * `_id` (code 11000, the one atomic primitive the design relies on); the Temporal dev server has
 * our search attributes registered, with their types, and usable in a visibility query.
 */
import * as fs from 'node:fs';
import { Connection } from '@temporalio/client';
import { MongoClient } from 'mongodb';
import { INDEXED_VALUE_TYPE } from '../../tools/infra/servers';
import { SEARCH_ATTRIBUTES } from '../../src/contracts';

function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: is test/global-setup.ts the integration project's globalSetup?`);
  return value;
}

describe('integration harness', () => {
  it('serves MongoDB (FerretDB): a second insert with the same _id fails with 11000', async () => {
    const client = await MongoClient.connect(env('MONGODB_URI'), { serverSelectionTimeoutMS: 5_000 });
    const db = client.db(`infra_test_${process.pid}`);
    try {
      const claims = db.collection<{ _id: string; by: string }>('claims');
      const _id = `claim-${Date.now()}-${Math.random().toString(36).slice(2)}`;
      await claims.insertOne({ _id, by: 'first' });
      await expect(claims.insertOne({ _id, by: 'second' })).rejects.toMatchObject({ code: 11000 });
      await expect(claims.findOne({ _id })).resolves.toEqual({ _id, by: 'first' });
    } finally {
      await db.dropDatabase();
      await client.close();
    }
  });

  it('serves Temporal with our search attributes registered', async () => {
    const connection = await Connection.connect({ address: env('TEMPORAL_ADDRESS') });
    try {
      const namespace = process.env.TEMPORAL_NAMESPACE ?? 'default';
      const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace });
      for (const [name, type] of Object.entries(SEARCH_ATTRIBUTES)) {
        expect({ name, type: customAttributes?.[name] }).toEqual({ name, type: INDEXED_VALUE_TYPE[type] });
      }
      // Visibility accepts them in a query (an unknown attribute would be INVALID_ARGUMENT).
      const { count } = await connection.workflowService.countWorkflowExecutions({
        namespace,
        query: `WabaId = "no-such-waba" AND EscalationLevel >= 0`,
      });
      expect(Number(count)).toBe(0);
    } finally {
      await connection.close();
    }
  });

  it('exposes the cached Temporal CLI for TestWorkflowEnvironment.createLocal', () => {
    expect(() => fs.accessSync(env('TEMPORAL_CLI_PATH'), fs.constants.X_OK)).not.toThrow();
  });
});
