import net from 'node:net';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Client, Connection } from '@temporalio/client';
import { createApp } from '../../src/http/app';
import { createLogger } from '../../src/logger';
import { createWorker } from '../../src/worker';
import { launchDepsFor, readinessChecks } from '../../src/runtime';
import { collections } from '../../src/adapters/store/db';
import { startOutboxRelay } from '../../src/lifecycle/outbox-relay';
import { accountUpdatePayload } from '../../tools/meta-sim/payloads';
import { sendWebhook } from '../../tools/meta-sim/server';
import { signBody } from '../../src/adapters/meta/signature';
import { wabaWorkflowId } from '../../src/contracts';
import { eventually, sharedBundle, startStack, uniqueDigits, type Stack } from '../support/stack';

/** A TCP proxy in front of the Temporal server that a test can cut and restore. */
async function startProxy(target: string) {
  const [host, port] = target.split(':') as [string, string];
  const sockets = new Set<net.Socket>();
  let server: net.Server | undefined;
  let listenPort = 0;
  const open = () =>
    new Promise<void>((resolve) => {
      server = net.createServer((client) => {
        const upstream = net.connect(Number(port), host);
        for (const s of [client, upstream]) {
          sockets.add(s);
          s.on('error', () => undefined);
          s.on('close', () => sockets.delete(s));
        }
        client.pipe(upstream).pipe(client);
      });
      server.listen(listenPort, '127.0.0.1', () => {
        listenPort = (server!.address() as AddressInfo).port;
        resolve();
      });
    });
  await open();
  return {
    address: () => `127.0.0.1:${listenPort}`,
    async cut() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server!.close(r));
    },
    restore: open,
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server!.close(r));
    },
  };
}

describe('resilience on the real stack', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack();
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('has a live app that reports itself ready when Temporal and MongoDB answer', async () => {
    expect((await fetch(`${stack.url}/healthz`)).status).toBe(200);
    const ready = await fetch(`${stack.url}/readyz`);
    expect(ready.status).toBe(200);
  });

  it('reports MongoDB by name when it is not reachable', async () => {
    const { MongoClient } = await import('mongodb');
    const dead = new MongoClient('mongodb://127.0.0.1:1/', { serverSelectionTimeoutMS: 500 });
    const app = createApp({
      config: stack.config,
      logger: createLogger('silent'),
      c: stack.rt.c,
      launch: stack.rt.launch,
      readiness: readinessChecks(dead.db('x'), stack.rt.temporal),
    });
    const server: Server = await new Promise((r) => {
      const s = app.listen(0, '127.0.0.1', () => r(s));
    });
    try {
      const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/readyz`);
      expect(res.status).toBe(503);
      expect(await res.json()).toMatchObject({ down: ['mongodb'] });
    } finally {
      await new Promise((r) => server.close(r));
      await dead.close();
    }
  });

  it('records nothing at all for an unsigned or wrongly signed webhook', async () => {
    const wabaId = uniqueDigits();
    const body = JSON.stringify(accountUpdatePayload(wabaId, 'ACCOUNT_OFFBOARDED'));
    const url = stack.url + stack.config.webhook.path;
    const unsigned = await fetch(url, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
    const wrong = await fetch(url, {
      method: 'POST',
      body,
      headers: { 'x-hub-signature-256': signBody(body, 'not-the-secret') },
    });
    expect([unsigned.status, wrong.status]).toEqual([401, 401]);
    expect(await stack.rt.c.accountEvents.countDocuments({ wabaId })).toBe(0);
    expect(await stack.rt.c.wabas.findOne({ _id: wabaId })).toBeNull();
    await expect(stack.rt.temporal.workflow.getHandle(wabaWorkflowId(wabaId)).describe()).rejects.toThrow();
  });

  it('answers 200 while Temporal is unreachable (the delivery waits in the outbox) and applies it once Temporal is back', async () => {
    const proxy = await startProxy(stack.config.temporal.address);
    // No client-side gRPC retry interceptor on this test client: its retry timers would outlive
    // the test (the relay's own deadline and back-off are what bound the retries).
    const connection = await Connection.connect({ address: proxy.address(), interceptors: [] });
    const client = new Client({ connection, namespace: stack.config.temporal.namespace });
    const launch = launchDepsFor(client, stack.config);
    const relay = startOutboxRelay(
      { c: stack.rt.c, launch, logger: createLogger('silent') },
      { deadlineMs: 1_000, initialBackoffMs: 200, maxBackoffMs: 1_000 },
    );
    const app = createApp({
      config: stack.config,
      logger: createLogger('silent'),
      c: stack.rt.c,
      launch,
      readiness: readinessChecks(stack.rt.db, client),
      outbox: relay,
    });
    const server: Server = await new Promise((r) => {
      const s = app.listen(0, '127.0.0.1', () => r(s));
    });
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const wabaId = uniqueDigits();
      const body = accountUpdatePayload(wabaId, 'ACCOUNT_OFFBOARDED');
      await proxy.cut();
      const started = Date.now();
      const first = await sendWebhook({ targetUrl: url + stack.config.webhook.path, appSecret: stack.appSecret, body });
      expect(first.status).toBe(200);
      expect(Date.now() - started).toBeLessThan(2_000);
      const ready = await fetch(`${url}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toMatchObject({ down: ['temporal'] });
      // Held, not applied, while Temporal is away: the relay keeps retrying.
      await new Promise((r) => setTimeout(r, 3_000));
      expect(await stack.rt.c.wabas.findOne({ _id: wabaId })).toBeNull();
      expect(await stack.rt.c.outbox.countDocuments({ wabaIds: wabaId })).toBe(1);
      expect(await stack.rt.c.accountEvents.countDocuments({ wabaId })).toBe(0);

      await proxy.restore();
      await eventually(async () => (await stack.rt.c.wabas.findOne({ _id: wabaId }))?.state === 'offboarded', 60_000);
      await eventually(async () => (await stack.rt.c.outbox.countDocuments({ wabaIds: wabaId })) === 0);
      const audit = await stack.rt.c.accountEvents.find({ wabaId }).toArray();
      expect(audit).toHaveLength(1);
      expect(audit[0]?.outcome).toBe('signalled');
      const doc = await stack.rt.c.wabas.findOne({ _id: wabaId });
      expect(doc?.events.filter((e) => e.type === 'ACCOUNT_OFFBOARDED')).toHaveLength(1);
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await relay.stop();
      await connection.close();
      await proxy.stop();
    }
  });

  it('answers 5xx while the store is unreachable (so Meta redelivers), and records nothing', async () => {
    const { MongoClient } = await import('mongodb');
    const dead = new MongoClient('mongodb://127.0.0.1:1/', { serverSelectionTimeoutMS: 500 });
    const app = createApp({
      config: stack.config,
      logger: createLogger('silent'),
      c: collections(dead.db('x')),
      launch: stack.rt.launch,
      readiness: readinessChecks(dead.db('x'), stack.rt.temporal),
    });
    const server: Server = await new Promise((r) => {
      const s = app.listen(0, '127.0.0.1', () => r(s));
    });
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const wabaId = uniqueDigits();
      const body = accountUpdatePayload(wabaId, 'ACCOUNT_OFFBOARDED');
      const r = await sendWebhook({ targetUrl: url + stack.config.webhook.path, appSecret: stack.appSecret, body });
      expect(r.status).toBe(503);
      await new Promise((res) => setTimeout(res, 1_000));
      expect(await stack.rt.c.wabas.findOne({ _id: wabaId })).toBeNull();
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await dead.close();
    }
  });
});

describe('a worker killed in the middle of a drain', () => {
  let stack: Stack;
  let child: ChildProcess | undefined;
  beforeAll(async () => {
    stack = await startStack({ noWorker: true });
  });
  afterAll(async () => {
    child?.kill('SIGKILL');
    await stack?.stop();
  });

  it('loses nothing, and sends twice only messages Meta accepted whose settlement was not yet written', async () => {
    const wabaId = uniqueDigits();
    const phone = uniqueDigits('4');
    await stack.register(phone, wabaId, { mps: 10 });
    // The worker in a child process: SIGKILL is a real crash (no graceful shutdown). Node runs it
    // with tsx as a loader, in this one process (tsx's CLI would fork a grandchild that outlives it).
    child = spawn(process.execPath, ['--import', 'tsx', 'src/worker-main.ts'], {
      cwd: path.join(__dirname, '../..'),
      env: { ...process.env, ...stack.env, LOG_LEVEL: 'warn' },
      stdio: 'ignore',
    });
    await stack.accountUpdate(wabaId, 'ACCOUNT_OFFBOARDED');
    await eventually(async () => (await stack.rt.c.wabas.findOne({ _id: wabaId }))?.state === 'offboarded', 60_000);
    const ids: string[] = [];
    for (let i = 0; i < 40; i++) {
      ids.push(
        (
          await stack.send({
            phoneNumberId: phone,
            to: `1555100${String(i).padStart(4, '0')}`,
            type: 'text',
            text: { body: `k${i}` },
          })
        ).json.id as string,
      );
    }
    await stack.accountUpdate(wabaId, 'ACCOUNT_RECONNECTED');
    const accepted = () => stack.sim.log.accepted.filter((m) => m.phoneNumberId === phone);
    await eventually(async () => accepted().length >= 12, 60_000, 20);

    child.kill('SIGKILL');
    await new Promise((r) => child!.once('exit', r));
    const afterKill = accepted().length;
    await new Promise((r) => setTimeout(r, 1_500));
    expect(accepted().length).toBe(afterKill); // the killed worker really is gone: nothing more leaves
    const acceptedAtKill = new Set(accepted().map((m) => (m.body as { text: { body: string } }).text.body));
    const bodyOf = new Map(ids.map((id, i) => [id, `k${i}`]));
    const settledAtKill = new Set(
      (await stack.rt.c.settlements.find({ status: 'sent' }).toArray()).map((s) => bodyOf.get(s._id)),
    );
    expect(acceptedAtKill.size).toBeLessThan(40);

    // A fresh worker takes over; the drain activity is retried after its heartbeat timeout.
    const { worker, clock } = await createWorker({
      config: stack.config,
      logger: createLogger('silent'),
      db: stack.rt.db,
      c: stack.rt.c,
      launch: stack.rt.launch,
      graph: stack.rt.graph,
      workflowBundle: await sharedBundle(),
    });
    const running = worker.run();
    try {
      await eventually(
        async () => (await stack.rt.c.wabas.findOne({ _id: wabaId }))?.state === 'connected',
        90_000,
        500,
      );
    } finally {
      worker.shutdown();
      await running;
      clock?.stop();
    }
    const bodies = accepted().map((m) => (m.body as { text: { body: string } }).text.body);
    const counts = new Map<string, number>();
    for (const b of bodies) counts.set(b, (counts.get(b) ?? 0) + 1);
    expect(counts.size).toBe(40); // nothing lost
    const twice = [...counts].filter(([, n]) => n > 1).map(([b]) => b);
    for (const b of twice) {
      expect(acceptedAtKill.has(b)).toBe(true);
      expect(settledAtKill.has(b)).toBe(false);
    }
    for (const id of ids) expect((await stack.message(id))?.status).toBe('sent');
  });
});
