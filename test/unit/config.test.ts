import { ConfigError, loadConfig, parseDuration } from '../../src/config';

const valid = {
  META_APP_SECRET: 'new,old',
  META_VERIFY_TOKEN: 'tok',
  OPS_API_KEYS: 'ops',
  SEND_API_KEYS: 'send1, send2',
  TEMPORAL_ADDRESS: '127.0.0.1:7233',
  MONGODB_URI: 'mongodb://127.0.0.1:27017/',
  GRAPH_API_TOKEN: 'graph',
};

describe('configuration', () => {
  it('reads a valid environment with defaults filled in', () => {
    const c = loadConfig(valid);
    expect(c.webhook.appSecrets).toEqual(['new', 'old']);
    expect(c.sendApiKeys).toEqual([{ key: 'send1' }, { key: 'send2' }]);
    expect(c.webhook.maxBodyBytes).toBe(4 * 1024 * 1024);
    expect(c.lifecycle.escalation).toEqual([
      { level: 1, afterMs: 600_000, severity: 'warning' },
      { level: 2, afterMs: 3_600_000, severity: 'page' },
      { level: 3, afterMs: 86_400_000, severity: 'critical' },
    ]);
    expect(c.lifecycle.alertSinks).toEqual(['log']);
    expect(c.graph.baseUrl).toBe('https://graph.facebook.com');
  });

  it('names every missing or bad variable in one error', () => {
    const bad = {
      ...valid,
      META_APP_SECRET: undefined,
      PORT: 'eighty',
      MONGODB_URI: 'postgres://x',
      ESCALATION_LEVELS: '10m,5m',
    };
    let message = '';
    try {
      loadConfig(bad);
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      message = (err as Error).message;
    }
    expect(message).toMatch(/META_APP_SECRET: is required but not set/);
    expect(message).toMatch(/PORT:/);
    expect(message).toMatch(/MONGODB_URI: must be a mongodb/);
    expect(message).toMatch(/ESCALATION_LEVELS: levels must be strictly increasing/);
  });

  it('adds alert sinks when their URLs are set and rejects a malformed one', () => {
    expect(loadConfig({ ...valid, SLACK_WEBHOOK_URL: 'https://hooks.example/x' }).lifecycle.alertSinks).toEqual([
      'log',
      'slack',
    ]);
    expect(() => loadConfig({ ...valid, ALERT_WEBHOOK_URL: 'not a url' })).toThrow(/ALERT_WEBHOOK_URL/);
  });

  it('reads the in-flight limits (64 webhook deliveries, 256 API requests by default) and refuses 0 or words', () => {
    expect(loadConfig(valid).limits).toEqual({ webhookMaxInFlight: 64, apiMaxInFlight: 256 });
    expect(loadConfig({ ...valid, WEBHOOK_MAX_IN_FLIGHT: '8', API_MAX_IN_FLIGHT: '32' }).limits).toEqual({
      webhookMaxInFlight: 8,
      apiMaxInFlight: 32,
    });
    expect(() => loadConfig({ ...valid, WEBHOOK_MAX_IN_FLIGHT: '0' })).toThrow(/WEBHOOK_MAX_IN_FLIGHT/);
    expect(() => loadConfig({ ...valid, API_MAX_IN_FLIGHT: 'many' })).toThrow(/API_MAX_IN_FLIGHT/);
  });

  it('adds the PagerDuty and threaded Slack sinks, and names SLACK_CHANNEL when only the bot token is set', () => {
    const c = loadConfig({ ...valid, PAGERDUTY_ROUTING_KEY: 'rk', SLACK_BOT_TOKEN: 'xoxb', SLACK_CHANNEL: 'C1' });
    expect(c.lifecycle.alertSinks).toEqual(['log', 'slack', 'pagerduty']);
    expect(c.alerts.pagerduty).toEqual({ eventsUrl: 'https://events.pagerduty.com/v2/enqueue', routingKey: 'rk' });
    expect(c.alerts.slackApi).toEqual({ baseUrl: 'https://slack.com/api', botToken: 'xoxb', channel: 'C1' });
    expect(() => loadConfig({ ...valid, SLACK_BOT_TOKEN: 'xoxb' })).toThrow(/SLACK_CHANNEL: is required/);
  });

  it('backs gate probes off up to GATE_PROBE_MAX_INTERVAL (1 h by default), never below GATE_PROBE_INTERVAL', () => {
    expect(loadConfig(valid).lifecycle).toMatchObject({ probeIntervalMs: 60_000, probeMaxIntervalMs: 3_600_000 });
    expect(loadConfig({ ...valid, GATE_PROBE_MAX_INTERVAL: '10m' }).lifecycle.probeMaxIntervalMs).toBe(600_000);
    expect(() => loadConfig({ ...valid, GATE_PROBE_INTERVAL: '5m', GATE_PROBE_MAX_INTERVAL: '2m' })).toThrow(
      /GATE_PROBE_MAX_INTERVAL: must be at least GATE_PROBE_INTERVAL/,
    );
    expect(() => loadConfig({ ...valid, GATE_PROBE_MAX_INTERVAL: 'soon' })).toThrow(/GATE_PROBE_MAX_INTERVAL/);
    expect(loadConfig({ ...valid, GATE_PROBE_INTERVAL: '0' }).lifecycle.probeMaxIntervalMs).toBeUndefined();
  });

  it('keeps each recipient in order by default; DRAIN_ORDER=waba keeps the whole queue; nothing else', () => {
    expect(loadConfig(valid).sending.drainOrder).toBe('recipient');
    expect(loadConfig({ ...valid, DRAIN_ORDER: 'waba' }).sending.drainOrder).toBe('waba');
    expect(() => loadConfig({ ...valid, DRAIN_ORDER: 'strict' })).toThrow(/DRAIN_ORDER/);
  });

  it('parses durations and refuses nonsense', () => {
    expect(parseDuration('1500ms')).toBe(1500);
    expect(parseDuration('2.5s')).toBe(2500);
    expect(parseDuration('10m')).toBe(600_000);
    expect(parseDuration('1d')).toBe(86_400_000);
    expect(parseDuration('10 minutes')).toBeUndefined();
  });

  it('reads send keys scoped to WABAs and names SEND_API_KEYS without quoting a key when an entry is bad', () => {
    expect(loadConfig({ ...valid, SEND_API_KEYS: 'all-key, tenant-key:102290129340398|555' }).sendApiKeys).toEqual([
      { key: 'all-key' },
      { key: 'tenant-key', wabas: ['102290129340398', '555'] },
    ]);
    for (const bad of ['s3cret-key:', 's3cret-key:abc', ':123', 's3cret-key:1||2', 's3cret-key,s3cret-key:1']) {
      let message = '';
      try {
        loadConfig({ ...valid, SEND_API_KEYS: bad });
      } catch (err) {
        message = (err as Error).message;
      }
      expect(message).toMatch(/SEND_API_KEYS: /);
      expect(message).not.toContain('s3cret');
    }
  });

  it('reads the internal listener, the worker metrics listener and the per-key rate limit', () => {
    const c = loadConfig({
      ...valid,
      INTERNAL_PORT: '9090',
      WORKER_METRICS_PORT: '9464',
      TEMPORAL_METRICS_BIND: '0.0.0.0:9465',
    });
    expect(c.internal).toEqual({ port: 9090, host: '127.0.0.1' });
    expect(c.workerMetrics).toEqual({ port: 9464, host: '127.0.0.1' });
    expect(c.temporalMetricsBind).toBe('0.0.0.0:9465');
    expect(loadConfig(valid).internal).toBeUndefined();
    expect(loadConfig(valid).apiKeyRate).toEqual({ ratePerSec: 100, burst: 200 });
    expect(() => loadConfig({ ...valid, INTERNAL_PORT: 'http' })).toThrow(/INTERNAL_PORT/);
    expect(() => loadConfig({ ...valid, TEMPORAL_METRICS_BIND: '9465' })).toThrow(/TEMPORAL_METRICS_BIND/);
  });

  it('turns tracing on with an http(s) OTEL_EXPORTER_OTLP_ENDPOINT, naming the variable when it is not one', () => {
    expect(loadConfig(valid).tracing).toBeUndefined();
    expect(loadConfig({ ...valid, OTEL_EXPORTER_OTLP_ENDPOINT: '' }).tracing).toBeUndefined();
    expect(loadConfig({ ...valid, OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' }).tracing).toEqual({
      endpoint: 'http://collector:4318',
      serviceName: 'coexist-relay',
    });
    expect(
      loadConfig({ ...valid, OTEL_EXPORTER_OTLP_ENDPOINT: 'https://otel.example/otlp', OTEL_SERVICE_NAME: 'relay-eu' })
        .tracing,
    ).toEqual({ endpoint: 'https://otel.example/otlp', serviceName: 'relay-eu' });
    for (const bad of ['collector:4318', 'grpc://collector:4317', 'not a url']) {
      expect(() => loadConfig({ ...valid, OTEL_EXPORTER_OTLP_ENDPOINT: bad })).toThrow(
        /OTEL_EXPORTER_OTLP_ENDPOINT: must be an http:\/\/ or https:\/\/ URL/,
      );
    }
  });

  it('reads retention windows (30 d messages and statuses, 90 d account events, 24 h idempotency, 7 d deliveries by default)', () => {
    expect(loadConfig(valid).retention).toEqual({
      messagesMs: 30 * 86_400_000,
      statusesMs: 30 * 86_400_000,
      accountEventsMs: 90 * 86_400_000,
      idempotencyMs: 86_400_000,
      deliveriesMs: 7 * 86_400_000,
      purgeIntervalMs: 300_000,
      purgeBatch: 500,
    });
    expect(loadConfig({ ...valid, RETENTION_STATUSES: 'off', RETENTION_IDEMPOTENCY: '1h' }).retention).toMatchObject({
      idempotencyMs: 3_600_000,
    });
    expect(loadConfig({ ...valid, RETENTION_STATUSES: 'off' }).retention.statusesMs).toBeUndefined();
    expect(() => loadConfig({ ...valid, RETENTION_ACCOUNT_EVENTS: 'forever' })).toThrow(/RETENTION_ACCOUNT_EVENTS/);
    // Messages must outlive the escalation (24 h by default): a queued message is never purged first.
    expect(() => loadConfig({ ...valid, RETENTION_MESSAGES: '12h' })).toThrow(/RETENTION_MESSAGES/);
  });
});
