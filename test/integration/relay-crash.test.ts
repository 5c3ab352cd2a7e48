import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { freePort } from '../../tools/infra/servers';
import { sendWebhook } from '../../tools/meta-sim/server';
import { accountUpdatePayload } from '../../tools/meta-sim/payloads';
import { endpoint } from '../support/receiver';
import { eventually, startStack, uniqueDigits, type Stack } from '../support/stack';

/**
 * `kill -9` of the server between the ack to Meta and the forward: the forward entries hold the
 * deliveries, and the next server process forwards every one, in order.
 */
describe('relay across a kill -9 of the server', () => {
  let stack: Stack;
  let receiver: Awaited<ReturnType<typeof endpoint>>;
  const children: ChildProcess[] = [];
  beforeAll(async () => {
    receiver = await endpoint();
    // This process only reads the database; the servers under test are child processes.
    stack = await startStack();
  });
  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL');
    await stack?.stop();
    await receiver?.stop();
  });

  async function server(port: number): Promise<ChildProcess> {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/server-main.ts'], {
      cwd: path.join(__dirname, '../..'),
      env: {
        ...process.env,
        ...stack.env,
        PORT: String(port),
        LOG_LEVEL: 'warn',
        FORWARD_TARGETS: JSON.stringify([
          { name: 'inbox', url: receiver.url, secrets: [`whsec_${randomBytes(32).toString('base64')}`] },
        ]),
      },
      stdio: 'ignore',
    });
    children.push(child);
    await eventually(async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok, 60_000, 200);
    return child;
  }

  it('forwards everything the killed server acknowledged, once the next server runs', async () => {
    const wabaId = uniqueDigits();
    receiver.state.down = true;
    const port = await freePort();
    const first = await server(port);
    const bodies: string[] = [];
    for (let i = 0; i < 5; i++) {
      const body = JSON.stringify(
        accountUpdatePayload(wabaId, i % 2 === 0 ? 'ACCOUNT_OFFBOARDED' : 'ACCOUNT_RECONNECTED', {
          time: 1_700_000_000 + i,
        }),
      );
      bodies.push(body);
      const r = await sendWebhook({
        targetUrl: `http://127.0.0.1:${port}${stack.config.webhook.path}`,
        appSecret: stack.appSecret,
        body,
      });
      expect(r.status).toBe(200);
    }
    first.kill('SIGKILL');
    await new Promise((r) => first.once('exit', r));
    expect(receiver.got).toHaveLength(0);

    receiver.state.down = false;
    await server(await freePort());
    await eventually(async () => new Set(receiver.got.map((r) => r.id)).size >= bodies.length, 60_000);
    const once = new Map(receiver.got.map((r) => [r.id, r.raw.toString('utf8')]));
    expect([...once.values()]).toEqual(bodies);
  });
});
