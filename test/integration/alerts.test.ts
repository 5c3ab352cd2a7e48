import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { reportForwardBacklog } from '../../src/relay/launch';
import { sendWebhook } from '../../tools/meta-sim/server';
import { eventually, startStack, uniqueDigits, type Stack } from '../support/stack';

/** A local HTTP receiver that records JSON bodies and answers with `reply(body, path)`. */
async function receiver(reply: (body: Record<string, unknown>, req: IncomingMessage) => [number, unknown]) {
  const got: { path: string; auth?: string; body: Record<string, unknown> }[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
      got.push({ path: req.url ?? '', auth: req.headers.authorization, body });
      const [status, answer] = reply(body, req);
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { got, url, stop: () => new Promise((r) => server.close(r)) };
}

/**
 * Alert sinks against receivers speaking each sink's request shape: PagerDuty Events API v2 (one
 * incident per offboarding: trigger, update, resolve) and Slack's Web API (one thread per
 * offboarding).
 */
describe('alert sinks operators use', () => {
  let stack: Stack;
  let pd: Awaited<ReturnType<typeof receiver>>;
  let slack: Awaited<ReturnType<typeof receiver>>;
  let nextTs = 1000;
  /** A forward target that answers 503 while `down`. */
  let crm: Awaited<ReturnType<typeof receiver>>;
  let crmDown = false;
  beforeAll(async () => {
    pd = await receiver((body) => [202, { status: 'success', message: 'Event processed', dedup_key: body.dedup_key }]);
    slack = await receiver((body) => [200, { ok: true, channel: body.channel, ts: `${nextTs++}.000100` }]);
    crm = await receiver(() => (crmDown ? [503, {}] : [200, {}]));
    stack = await startStack({
      env: {
        FORWARD_TARGETS: JSON.stringify([
          {
            name: 'crm',
            url: crm.url,
            secrets: [`whsec_${Buffer.from('c'.repeat(32)).toString('base64')}`],
            fields: ['messages'],
          },
        ]),
        FORWARD_BACKLOG_ALERT_AGE: '2s',
        ESCALATION_LEVELS: '1s,2s,1h',
        PAGERDUTY_ROUTING_KEY: 'pd-routing-key',
        PAGERDUTY_EVENTS_URL: `${pd.url}/v2/enqueue`,
        SLACK_BOT_TOKEN: 'xoxb-test',
        SLACK_CHANNEL: 'C0ALERTS',
        SLACK_API_BASE_URL: `${slack.url}/api`,
      },
    });
  });
  afterAll(async () => {
    await stack?.stop();
    await pd?.stop();
    await slack?.stop();
    await crm?.stop();
  });

  it('PagerDuty sees trigger → update → resolve for one offboard/escalate/reconnect cycle, and Slack one thread', async () => {
    const wabaId = uniqueDigits();
    const mine = (r: { body: Record<string, unknown> }) => JSON.stringify(r.body).includes(wabaId);
    const t0 = Math.floor(Date.now() / 1000);
    expect(await stack.accountUpdate(wabaId, 'ACCOUNT_OFFBOARDED', { time: t0 })).toBe(200);
    await eventually(async () => pd.got.filter(mine).length >= 2, 30_000);
    expect(await stack.accountUpdate(wabaId, 'ACCOUNT_RECONNECTED', { time: t0 + 10 })).toBe(200);
    await eventually(async () => pd.got.filter(mine).length >= 3, 30_000);

    const events = pd.got.filter(mine).map((r) => r.body);
    expect(events.map((e) => e.event_action)).toEqual(['trigger', 'trigger', 'resolve']);
    expect(new Set(events.map((e) => e.dedup_key))).toEqual(new Set([`coexist-relay/waba/${wabaId}`]));
    expect(events.every((e) => e.routing_key === 'pd-routing-key')).toBe(true);
    expect(events.slice(0, 2).map((e) => (e.payload as { severity: string }).severity)).toEqual(['warning', 'error']);
    expect(pd.got.every((r) => r.path === '/v2/enqueue')).toBe(true);
    // Counted where operators look (the worker's metrics; one process here).
    const metrics = await (await fetch(`${stack.url}/metrics`)).text();
    const delivered = /^coexist_relay_alert_deliveries_total\{sink="pagerduty",outcome="delivered"\} (\d+)/m.exec(
      metrics,
    );
    expect(Number(delivered?.[1])).toBeGreaterThanOrEqual(3);

    await eventually(async () => slack.got.filter(mine).length >= 3, 30_000);
    const posts = slack.got.filter(mine);
    expect(posts.every((p) => p.path === '/api/chat.postMessage' && p.auth === 'Bearer xoxb-test')).toBe(true);
    expect(posts[0]!.body.thread_ts).toBeUndefined();
    expect(posts[0]!.body.channel).toBe('C0ALERTS');
    const root = (await stack.rt.c.alertThreads.findOne({ _id: wabaId }))?.ts;
    expect(root).toBeDefined();
    expect(posts.slice(1).map((p) => p.body.thread_ts)).toEqual([root, root]);
    await eventually(async () => (await stack.rt.c.alertThreads.findOne({ _id: wabaId }))?.open === false, 10_000);

    // The next offboarding is a new incident: a new Slack thread, a new PagerDuty trigger.
    expect(await stack.accountUpdate(wabaId, 'ACCOUNT_OFFBOARDED', { time: t0 + 20 })).toBe(200);
    await eventually(async () => slack.got.filter(mine).length >= 4 && pd.got.filter(mine).length >= 4, 30_000);
    expect(slack.got.filter(mine)[3]!.body.thread_ts).toBeUndefined();
    expect(pd.got.filter(mine)[3]!.body.event_action).toBe('trigger');
  });

  it('a forward target down past FORWARD_BACKLOG_ALERT_AGE is one incident: PagerDuty trigger → resolve, one Slack thread', async () => {
    const dedupKey = 'coexist-relay/forward/crm';
    const ofBacklog = (r: { body: Record<string, unknown> }) =>
      r.body.dedup_key === dedupKey || JSON.stringify(r.body).includes('forward/crm');
    crmDown = true;
    const wabaId = uniqueDigits();
    const inbound = {
      object: 'whatsapp_business_account',
      entry: [
        {
          id: wabaId,
          time: Math.floor(Date.now() / 1000),
          changes: [
            {
              field: 'messages',
              value: {
                messaging_product: 'whatsapp',
                metadata: { display_phone_number: '15550001111', phone_number_id: uniqueDigits() },
                messages: [
                  { from: '15557654321', id: 'wamid.in1', timestamp: '1', type: 'text', text: { body: 'hi' } },
                ],
              },
            },
          ],
        },
      ],
    };
    expect((await sendWebhook({ targetUrl: stack.webhookUrl, appSecret: stack.appSecret, body: inbound })).status).toBe(
      200,
    );
    await eventually(
      async () => pd.got.filter(ofBacklog).length >= 1 && slack.got.filter(ofBacklog).length >= 1,
      30_000,
    );
    // Down for a while, and seen by two more servers at once: still one incident (each server
    // reports every 30 s to the target's one workflow; the run alerts once).
    const report = { target: 'crm', oldestAgeMs: 3_000, pending: 1 };
    await Promise.all([reportForwardBacklog(stack.rt.launch, report), reportForwardBacklog(stack.rt.launch, report)]);
    await new Promise((r) => setTimeout(r, 4_000));
    expect(pd.got.filter(ofBacklog).map((r) => r.body.event_action)).toEqual(['trigger']);
    const trigger = pd.got.find(ofBacklog)!.body;
    expect((trigger.payload as { component: string }).component).toBe('forward/crm');
    expect((trigger.payload as { summary: string }).summary).toContain('crm');

    crmDown = false;
    await eventually(
      async () => pd.got.filter(ofBacklog).length >= 2 && slack.got.filter(ofBacklog).length >= 2,
      60_000,
    );
    expect(pd.got.filter(ofBacklog).map((r) => r.body.event_action)).toEqual(['trigger', 'resolve']);
    expect(new Set(pd.got.filter(ofBacklog).map((r) => r.body.dedup_key))).toEqual(new Set([dedupKey]));
    const posts = slack.got.filter(ofBacklog);
    const root = (await stack.rt.c.alertThreads.findOne({ _id: 'forward/crm' }))?.ts;
    expect(posts[0]!.body.thread_ts).toBeUndefined();
    expect(posts[1]!.body.thread_ts).toBe(root);
    await eventually(
      async () => (await stack.rt.c.alertThreads.findOne({ _id: 'forward/crm' }))?.open === false,
      10_000,
    );
  });
});
