/**
 * docs/grafana/vps.json must not rot: every metric it queries exists in the service's registry (with the
 * suffixes its type exposes), every label it filters or groups by is one that metric has (or a label
 * Prometheus adds to every target), and every application metric has a panel.
 */
import { readFileSync } from 'node:fs';
import client from 'prom-client';
import { describe, expect, it } from 'vitest';
import { enablePrometheus } from '../../src/metrics/prometheus.js';

interface Target {
  expr: string;
  datasource?: { uid?: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  targets?: Target[];
  panels?: Panel[];
  datasource?: { uid?: string };
}
const dashboard = JSON.parse(readFileSync(new URL('../../docs/grafana/vps.json', import.meta.url), 'utf8')) as {
  panels: Panel[];
  templating: { list: { name: string; query?: string | { query: string } }[] };
};
const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
const exprs = [
  ...panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr)),
  ...dashboard.templating.list.flatMap((v) => (typeof v.query === 'object' ? [v.query.query] : [])),
];

const registry = enablePrometheus().registry;
const registered = new Map(
  registry
    .getMetricsAsArray()
    .map((m) => [(m as unknown as { name: string }).name, m as unknown as { name: string; labelNames?: string[] }]),
);
/** Prometheus target labels and the histogram bucket label: on every series, whatever the metric declares. */
const ALWAYS = new Set(['job', 'instance', 'le']);

/** The registered metric a series name belongs to (histogram and summary series carry a suffix). */
function metricOf(series: string): string | null {
  if (registered.has(series)) return series;
  const m = /^(.*)_(bucket|sum|count)$/.exec(series);
  const base = m ? registered.get(m[1]!) : undefined;
  if (!base) return null;
  const histogram = base instanceof client.Histogram;
  const summary = base instanceof client.Summary;
  return histogram || (summary && m![2] !== 'bucket') ? base.name : null;
}

const labelsOf = (metric: string): string[] => registered.get(metric)?.labelNames ?? [];

describe('the Grafana dashboard (docs/grafana/vps.json)', () => {
  it('is a dashboard: unique panel ids, queries on the datasource variable', () => {
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const graphs = panels.filter((p) => p.type !== 'row');
    expect(graphs.length).toBeGreaterThan(15);
    for (const p of graphs) {
      expect(p.targets?.length, p.title).toBeGreaterThan(0);
      expect(p.datasource?.uid, p.title).toBe('${datasource}');
      for (const t of p.targets!) expect(t.expr.trim(), p.title).not.toBe('');
    }
  });

  it('queries only metrics the registry has', () => {
    const queried = new Set(exprs.flatMap((e) => e.match(/\bvps_\w+/g) ?? []));
    expect(queried.size).toBeGreaterThan(15);
    const unknown = [...queried].filter((s) => !metricOf(s));
    expect(unknown).toEqual([]);
  });

  it('filters and groups only by labels the queried metrics have', () => {
    for (const expr of exprs) {
      const metrics = (expr.match(/\bvps_\w+/g) ?? []).map((s) => metricOf(s)!);
      const allowed = new Set([...ALWAYS, ...metrics.flatMap(labelsOf)]);
      const used = [
        ...[...expr.matchAll(/\{([^}]*)\}/g)].flatMap((m) => [...m[1]!.matchAll(/(\w+)\s*(?:=~|!~|!=|=)/g)].map((l) => l[1]!)),
        ...[...expr.matchAll(/\b(?:by|without)\s*\(([^)]*)\)/g)].flatMap((m) => m[1]!.split(',').map((l) => l.trim())),
        ...[...expr.matchAll(/label_values\([^,]+,\s*(\w+)\)/g)].map((m) => m[1]!),
      ].filter(Boolean);
      expect(
        used.filter((l) => !allowed.has(l)),
        expr,
      ).toEqual([]);
    }
  });

  it('has a panel for every application metric (a new metric gets one)', () => {
    const queried = new Set(exprs.flatMap((e) => (e.match(/\bvps_\w+/g) ?? []).map((s) => metricOf(s))));
    // prom-client's default process/runtime metrics are many; the dashboard shows a few of them
    const application = [...registered.keys()].filter((n) => !/^vps_(process_|nodejs_)/.test(n));
    expect(application.length).toBeGreaterThan(10);
    expect(application.filter((n) => !queried.has(n))).toEqual([]);
  });
});
