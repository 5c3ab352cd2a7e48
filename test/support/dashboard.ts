import fs from 'node:fs';
import path from 'node:path';

/** The Grafana dashboard shipped in deploy/grafana/ (docs/operations.md, "Dashboard"). */
export const DASHBOARD_FILE = path.join(__dirname, '../../deploy/grafana/coexist-relay.json');

export interface DashboardPanel {
  id: number;
  type: string;
  title: string;
  gridPos: { h: number; w: number; x: number; y: number };
  datasource?: { type?: string; uid?: string };
  targets?: { expr?: string; refId?: string; datasource?: { uid?: string } }[];
}

export interface Dashboard {
  uid: string;
  title: string;
  panels: DashboardPanel[];
  templating: { list: { name: string; type: string; query?: string }[] };
}

export const readDashboard = (): Dashboard => JSON.parse(fs.readFileSync(DASHBOARD_FILE, 'utf8')) as Dashboard;

/** Every PromQL query of the dashboard, with its panel's title. */
export function dashboardQueries(d: Dashboard = readDashboard()): { panel: string; expr: string }[] {
  return d.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr ?? '' })));
}

/**
 * The service's, its process metrics' (prom-client's `process_`, `nodejs_`) and the Temporal SDK's
 * series a query names (label names never carry these prefixes).
 */
export function seriesOf(expr: string): string[] {
  return [...new Set([...expr.matchAll(/\b(?:coexist_relay|process|nodejs|temporal)_[a-z0-9_]+\b/g)].map((m) => m[0]))];
}
