/**
 * The FerretDB wrapper's `_id` index (infra/ferretdb/idindex.go): FerretDB 1.24 pushes `{ _id }`
 * down to SQLite as `_ferretdb_sjson->'$._id' = ?`, which its own `_id` index cannot serve. The
 * wrapper indexes that expression on every collection table. Checked here on servers of our own
 * (not the harness's shared one, so a restart and the `--no-id-index` baseline can be tested),
 * through SQLite's plan as `ferretdb-embedded explain` prints it.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { MongoClient, ObjectId } from 'mongodb';
import { FERRETDB_WRAPPER_DIR, ferretdbBinary, goBuildEnv } from '../../tools/infra/binaries';
import { startFerretDb, type FerretDb } from '../../tools/infra/servers';

const run = promisify(execFile);

interface Plans {
  find: string;
  update: string;
  delete: string;
  indexes: string[];
}

/** `ferretdb-embedded explain` for one collection, by operation. */
async function explain(sqliteDir: string, db: string, collection: string): Promise<Plans> {
  const { stdout } = await run(ferretdbBinary(), [
    'explain',
    '--sqlite-dir',
    sqliteDir,
    '--db',
    db,
    '--collection',
    collection,
  ]);
  // Lines: `index <name>: <sql>` per index of the table, `<op>: <plan row>` per plan row.
  const plans: Plans = { find: '', update: '', delete: '', indexes: [] };
  for (const line of stdout.split('\n')) {
    const index = /^index (.+?): /.exec(line);
    if (index) {
      plans.indexes.push(index[1]!);
      continue;
    }
    const row = /^(find|update|delete): (.*)$/.exec(line);
    if (!row) continue;
    const op = row[1] as 'find' | 'update' | 'delete';
    plans[op] = plans[op] ? `${plans[op]}; ${row[2]!}` : row[2]!;
  }
  return plans;
}

/** A document with a string `_id` and nothing else. */
type Doc = { _id: string };

const INDEX_SEARCH = /^SEARCH \S+ USING INDEX coexist\$id\$\S+ \(<expr>=\?\)$/;

/** Polls the plan until the find by `_id` searches our index; returns how long that took. */
async function waitForIndex(sqliteDir: string, db: string, collection: string, timeoutMs = 5_000): Promise<number> {
  const started = Date.now();
  for (;;) {
    const plans = await explain(sqliteDir, db, collection).catch(() => undefined);
    if (plans && INDEX_SEARCH.test(plans.find)) return Date.now() - started;
    if (Date.now() - started > timeoutMs) {
      throw new Error(`no _id index on ${db}.${collection} after ${timeoutMs} ms; plan: ${JSON.stringify(plans)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('FerretDB _id index', () => {
  let tmpDir: string;
  const servers: FerretDb[] = [];
  const clients: MongoClient[] = [];

  async function start(sqliteDir: string, idIndex: boolean): Promise<MongoClient> {
    const server = await startFerretDb({ binary: ferretdbBinary(), sqliteDir, logDir: tmpDir, idIndex });
    servers.push(server);
    const client = await MongoClient.connect(server.uri, { serverSelectionTimeoutMS: 5_000 });
    clients.push(client);
    return client;
  }

  async function stopAll(): Promise<void> {
    await Promise.allSettled(clients.splice(0).map((c) => c.close()));
    await Promise.allSettled(servers.splice(0).map((s) => s.stop()));
  }

  beforeAll(() => {
    tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'coexist-relay-ferretdb-index-'));
  });
  afterEach(stopAll);
  afterAll(() => fs.rmSync(tmpDir, { recursive: true, force: true }));

  it('a collection created while the server runs gets the index within about a second; find, update and delete by _id search it', async () => {
    const dir = path.join(tmpDir, 'live');
    const client = await start(dir, true);
    const things = client.db('shop').collection<{ _id: string; n: number }>('things');
    await things.insertMany(Array.from({ length: 500 }, (_, n) => ({ _id: `thing-${n}`, n })));

    const tookMs = await waitForIndex(dir, 'shop', 'things');
    expect(tookMs).toBeLessThan(2_000);
    const plans = await explain(dir, 'shop', 'things');
    expect(plans).toMatchObject({
      find: expect.stringMatching(INDEX_SEARCH),
      update: expect.stringMatching(INDEX_SEARCH),
      delete: expect.stringMatching(INDEX_SEARCH),
    });
    // FerretDB's own unique index is still there, next to ours.
    expect(plans.indexes).toEqual([expect.stringMatching(/^coexist\$id\$things_/), expect.stringMatching(/__id_$/)]);
  });

  it('find, update and delete by _id (string and ObjectId) still return and change exactly the right document', async () => {
    const dir = path.join(tmpDir, 'results');
    const client = await start(dir, true);
    const db = client.db('shop');
    const things = db.collection<{ _id: string; n: number }>('things');
    await things.insertMany(Array.from({ length: 300 }, (_, n) => ({ _id: `thing-${n}`, n })));
    await waitForIndex(dir, 'shop', 'things');

    await expect(things.findOne({ _id: 'thing-123' })).resolves.toEqual({ _id: 'thing-123', n: 123 });
    await expect(things.findOne({ _id: 'no-such-thing' })).resolves.toBeNull();

    const updated = await things.updateOne({ _id: 'thing-7' }, { $set: { n: 7_000 } });
    expect(updated).toMatchObject({ matchedCount: 1, modifiedCount: 1 });
    await expect(things.findOne({ _id: 'thing-7' })).resolves.toEqual({ _id: 'thing-7', n: 7_000 });
    await expect(things.findOne({ _id: 'thing-8' })).resolves.toEqual({ _id: 'thing-8', n: 8 });

    await expect(things.deleteOne({ _id: 'thing-9' })).resolves.toMatchObject({ deletedCount: 1 });
    await expect(things.findOne({ _id: 'thing-9' })).resolves.toBeNull();
    await expect(things.deleteOne({ _id: 'thing-9' })).resolves.toMatchObject({ deletedCount: 0 });
    await expect(things.countDocuments()).resolves.toBe(299);

    // Unique _id is still FerretDB's: a duplicate insert fails with 11000.
    await expect(things.insertOne({ _id: 'thing-1', n: -1 })).rejects.toMatchObject({ code: 11000 });

    const byOid = db.collection<{ _id: ObjectId; label: string }>('by_oid');
    const ids = Array.from({ length: 50 }, () => new ObjectId());
    await byOid.insertMany(ids.map((_id, i) => ({ _id, label: `oid-${i}` })));
    await waitForIndex(dir, 'shop', 'by_oid');
    await expect(byOid.findOne({ _id: ids[17]! })).resolves.toEqual({ _id: ids[17], label: 'oid-17' });
    await expect(byOid.updateOne({ _id: ids[18]! }, { $set: { label: 'changed' } })).resolves.toMatchObject({
      modifiedCount: 1,
    });
    await expect(byOid.findOne({ _id: ids[18]! })).resolves.toEqual({ _id: ids[18], label: 'changed' });
    await expect(byOid.deleteOne({ _id: ids[19]! })).resolves.toMatchObject({ deletedCount: 1 });
    await expect(byOid.countDocuments()).resolves.toBe(49);
  });

  it('collections created later, in the same database and in a new one, get the index too', async () => {
    const dir = path.join(tmpDir, 'later');
    const client = await start(dir, true);
    await client.db('first').collection<Doc>('early').insertOne({ _id: 'a' });
    await waitForIndex(dir, 'first', 'early');

    await client.db('first').createCollection('late');
    await client.db('second').collection<Doc>('other').insertOne({ _id: 'b' });
    expect(await waitForIndex(dir, 'first', 'late')).toBeLessThan(2_000);
    expect(await waitForIndex(dir, 'second', 'other')).toBeLessThan(2_000);

    // Dropping a collection drops its table and our index with it; re-created, it gets the index again.
    await client.db('first').collection<Doc>('late').drop();
    await client.db('first').collection<Doc>('late').insertOne({ _id: 'c' });
    expect(await waitForIndex(dir, 'first', 'late')).toBeLessThan(2_000);
    await expect(client.db('first').collection<Doc>('late').findOne({ _id: 'c' })).resolves.toEqual({ _id: 'c' });
  });

  it('with --no-id-index a lookup by _id scans; restarted without it, existing collections get the index at start', async () => {
    const dir = path.join(tmpDir, 'baseline');
    const client = await start(dir, false);
    await client
      .db('shop')
      .collection<Doc>('things')
      .insertMany(Array.from({ length: 100 }, (_, n) => ({ _id: `thing-${n}` })));
    await new Promise((r) => setTimeout(r, 600)); // longer than the watch interval: nothing comes
    const before = await explain(dir, 'shop', 'things');
    expect(before.find).toMatch(/^SCAN /);
    expect(before.indexes).toEqual([expect.stringMatching(/__id_$/)]);
    await stopAll();

    const again = await start(dir, true);
    // The first pass runs before the server listens: no waiting.
    expect((await explain(dir, 'shop', 'things')).find).toMatch(INDEX_SEARCH);
    await expect(again.db('shop').collection('things').countDocuments()).resolves.toBe(100);
  });
});

/**
 * The indexer's Go tests (infra/ferretdb/idindex_test.go): it never switches a database's journal
 * mode and never opens one FerretDB has not switched to WAL yet. Both switching at once made
 * SQLite refuse FerretDB's switch, failing the command that created the database (CI saw a first
 * createIndex fail with "database is locked"). Run with the Go environment the wrapper is built
 * in, so the test build reuses its cache.
 */
describe('FerretDB wrapper, Go tests', () => {
  it('go test passes in infra/ferretdb', async () => {
    const { stdout } = await run('go', ['test', '-count=1', '.'], {
      cwd: FERRETDB_WRAPPER_DIR,
      env: goBuildEnv(),
      maxBuffer: 16 * 1024 * 1024,
    }).catch((err: { stdout?: string; stderr?: string; message: string }) => {
      throw new Error(`go test failed:\n${err.stdout ?? ''}\n${err.stderr ?? err.message}`);
    });
    expect(stdout).toMatch(/^ok\s/m);
  }, 300_000);
});
