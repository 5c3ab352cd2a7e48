import { dashboardQueries, readDashboard, seriesOf } from '../support/dashboard';
import { detachedServerApp } from '../support/server-app';

/**
 * deploy/grafana/coexist-relay.json must not drift from the code: every `coexist_relay_` series its
 * queries name exists, with a type its functions fit, in the registry a server builds (the app's
 * own wiring: relay metrics, store gauges, webhook counters), and so does every `process_` and
 * `nodejs_` one (prom-client's process metrics); every `coexist_relay_` metric of that registry
 * has a panel (the process metrics need not). `temporal_` series are the
 * SDK's: test/integration/telemetry.test.ts checks them against a real worker's scrape.
 */
describe('the Grafana dashboard', () => {
  const dashboard = readDashboard();
  const queries = dashboardQueries(dashboard);

  /**
   * The sample names a server's registry can expose (createApp wires it; the store gauges are only
   * read at a scrape) with their metric's type: histograms as `_bucket`, `_sum` and `_count`.
   */
  function serverSeries(): Map<string, string> {
    const out = new Map<string, string>();
    for (const m of detachedServerApp().metrics.registry.getMetricsAsArray()) {
      const { name } = m;
      const type = String(m.type); // 'counter', 'gauge', …: prom-client's typings say an enum
      if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) out.set(name + suffix, type);
      else out.set(name, type);
    }
    return out;
  }

  it('is a dashboard with a Prometheus data source variable that every panel and query uses', () => {
    expect(dashboard).toMatchObject({ uid: 'coexist-relay', title: 'coexist-relay' });
    expect(dashboard.templating.list).toContainEqual(
      expect.objectContaining({ name: 'datasource', type: 'datasource', query: 'prometheus' }),
    );
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of dashboard.panels) {
      expect(p.gridPos.x + p.gridPos.w).toBeLessThanOrEqual(24);
      if (p.type === 'row') continue;
      expect(p.datasource?.uid).toBe('${datasource}');
      expect(p.targets?.length).toBeGreaterThan(0);
      for (const t of p.targets ?? []) expect(t.datasource?.uid).toBe('${datasource}');
    }
    expect(queries.length).toBeGreaterThan(30);
  });

  it('names only series the server registry exposes, each in a function that fits its type', () => {
    const known = serverSeries();
    expect(known.get('coexist_relay_sends_total')).toBe('counter'); // the registry was wired
    expect(known.get('coexist_relay_gates_closed')).toBe('gauge');
    expect(known.get('coexist_relay_webhook_shed_total')).toBe('counter');
    const problems: string[] = [];
    for (const { panel, expr } of queries) {
      const named = seriesOf(expr);
      if (named.length === 0) problems.push(`${panel}: names no series: ${expr}`);
      for (const name of named) {
        if (name.startsWith('temporal_')) continue;
        const type = known.get(name);
        if (!type) problems.push(`${panel}: ${name} is not exposed by the service`);
        // rate() and increase() take counters (and a histogram's parts), never a gauge.
        for (const m of expr.matchAll(/\b(?:rate|increase)\(\s*([a-z_:][a-z0-9_:]*)/g)) {
          if (m[1] === name && type === 'gauge') problems.push(`${panel}: rate/increase of the gauge ${name}`);
        }
      }
      if (expr.includes('histogram_quantile(') && !/_bucket\[/.test(expr))
        problems.push(`${panel}: histogram_quantile without a _bucket series: ${expr}`);
      let depth = 0;
      for (const ch of expr) if ((depth += ch === '(' ? 1 : ch === ')' ? -1 : 0) < 0) break;
      if (depth !== 0) problems.push(`${panel}: unbalanced parentheses: ${expr}`);
    }
    expect(problems).toEqual([]);
  });

  it('has a panel for every service metric the server registry exposes', () => {
    const used = new Set(queries.flatMap((q) => seriesOf(q.expr)).map((n) => n.replace(/_(bucket|sum|count)$/, '')));
    const families = [...serverSeries().keys()]
      .filter((n) => n.startsWith('coexist_relay_'))
      .map((n) => n.replace(/_(bucket|sum|count)$/, ''));
    expect(families.length).toBeGreaterThan(20);
    expect([...new Set(families)].filter((f) => !used.has(f))).toEqual([]);
  });
});
