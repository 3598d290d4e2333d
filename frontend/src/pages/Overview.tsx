// The overview: registry totals (/api/stats), workers running, and per server the
// calls, errors and latency from the gateway's metrics (/api/metrics, read every 2 s)
// with a sparkline of calls per second over the last two minutes.

import { Link } from 'wouter';
import { useMetrics, useRuntime, useServers, useStats } from '../lib/queries';
import { formatMs } from '../lib/status';
import { Sparkline } from '../components/Sparkline';
import { ErrorMessage, Loading } from '../components/QueryState';
import type { MetricsView } from '../lib/types';

const INTERVAL_MS = 2000;
const SAMPLES = 60;

interface Sample {
  at: number;
  calls: number;
  errors: number;
}

/** Kept outside the component so the sparklines survive leaving the page. */
const samples = new Map<string, Sample[]>();
let lastScrape = 0;

function record(view: MetricsView) {
  if (!view.available || view.scrapedAt === lastScrape) return;
  lastScrape = view.scrapedAt;
  for (const s of view.servers) {
    const list = samples.get(s.serverId) ?? [];
    list.push({ at: view.scrapedAt, calls: s.calls, errors: s.errors });
    if (list.length > SAMPLES + 1) list.shift();
    samples.set(s.serverId, list);
  }
}

/** Calls per second between consecutive samples (a gateway restart resets to 0). */
function rates(list: Sample[]): number[] {
  const out: number[] = [];
  for (let i = 1; i < list.length; i++) {
    const dt = (list[i].at - list[i - 1].at) / 1000;
    const dc = list[i].calls - list[i - 1].calls;
    out.push(dt > 0 && dc >= 0 ? dc / dt : 0);
  }
  return out;
}

function Tile({ label, value, sub, testId }: { label: string; value: number | string; sub?: string; testId?: string }) {
  return (
    <div className="tile card" data-testid={testId}>
      <div className="tile-value">{value}</div>
      <div className="tile-label">{label}</div>
      {sub && <div className="muted small">{sub}</div>}
    </div>
  );
}

export function Overview() {
  const stats = useStats();
  const servers = useServers();
  const runtime = useRuntime();
  const metrics = useMetrics(INTERVAL_MS);
  // Idempotent per read (keyed by its time), so calling it while rendering is safe.
  if (metrics.data) record(metrics.data);

  const workers = (runtime.data ?? []).flatMap((r) => r.workers);
  const running = workers.filter((w) => w.status === 'running').length;
  const restarts = workers.reduce((n, w) => n + w.restarts, 0);
  const m = metrics.data;
  const known = new Set((servers.data ?? []).map((s) => s.id));
  const rows = (m?.servers ?? []).filter((s) => known.has(s.serverId) || s.calls > 0);
  const silent = (servers.data ?? []).filter((s) => !rows.some((r) => r.serverId === s.id));

  return (
    <section className="page">
      <div className="page-head">
        <h1>Overview</h1>
        <span className="muted small">metrics every {INTERVAL_MS / 1000} s</span>
      </div>
      {stats.error ? <ErrorMessage error={stats.error} /> : null}
      {stats.isPending && !stats.error && <Loading what="totals" />}
      {stats.data && (
        <div className="tiles" data-testid="totals">
          <Tile label="Servers" value={stats.data.servers} sub={`${stats.data.activeServers} active`} testId="tile-servers" />
          <Tile label="Tools" value={stats.data.tools} sub={`${stats.data.activeTools} active`} testId="tile-tools" />
          <Tile label="Workers running" value={running} sub={`${workers.length} record${workers.length === 1 ? '' : 's'} · ${restarts} restart${restarts === 1 ? '' : 's'}`} />
          <Tile
            label="Calls"
            value={m?.available ? m.totals.calls : '—'}
            sub={m?.available ? `${m.totals.errors} error${m.totals.errors === 1 ? '' : 's'} since the gateway started` : 'gateway metrics unavailable'}
            testId="tile-calls"
          />
        </div>
      )}
      {m && !m.available && (
        <div className="banner warn" role="status">
          The gateway's metrics cannot be read ({m.error}). Source: <code>{m.source}</code> (
          <code>MCP_ADMIN_GATEWAY_METRICS_URL</code>).
        </div>
      )}
      {metrics.error && !stats.error ? <ErrorMessage error={metrics.error} /> : null}
      <section className="card" aria-labelledby="per-server">
        <h2 id="per-server">Per server</h2>
        {servers.data && servers.data.length === 0 && (
          <p className="muted">
            No server is registered yet. <Link href="/servers/new">Register one</Link>.
          </p>
        )}
        {(rows.length > 0 || (m?.available && silent.length > 0)) && (
          <div className="table-wrap">
            <table data-testid="metrics-table">
              <thead>
                <tr>
                  <th>Server</th>
                  <th className="num">Calls</th>
                  <th className="num">Errors</th>
                  <th className="num">Error rate</th>
                  <th className="num">Mean</th>
                  <th className="num">p50</th>
                  <th className="num">p95</th>
                  <th>Calls/s (2 min)</th>
                </tr>
              </thead>
              <tbody>
                {rows.map((s) => {
                  const series = rates(samples.get(s.serverId) ?? []);
                  const now = series[series.length - 1] ?? 0;
                  return (
                    <tr key={s.serverId} data-server={s.serverId}>
                      <td data-label="Server">
                        <Link href={`/servers/${encodeURIComponent(s.serverId)}`} className="strong mono">
                          {s.serverId}
                        </Link>
                      </td>
                      <td data-label="Calls" className="num" data-testid="calls">{s.calls}</td>
                      <td data-label="Errors" className="num" data-testid="errors">
                        {s.errors}
                        {Object.keys(s.errorsByCode).length > 0 && (
                          <div className="muted small">
                            {Object.entries(s.errorsByCode)
                              .map(([code, n]) => `${code}×${n}`)
                              .join(' ')}
                          </div>
                        )}
                      </td>
                      <td data-label="Error rate" className="num">
                        {s.requests ? `${((100 * s.errors) / s.requests).toFixed(1)} %` : '—'}
                      </td>
                      <td data-label="Mean" className="num">{formatMs(s.latency.meanMs)}</td>
                      <td data-label="p50" className="num">{formatMs(s.latency.p50Ms)}</td>
                      <td data-label="p95" className="num">{formatMs(s.latency.p95Ms)}</td>
                      <td data-label="Calls/s">
                        <span className="spark-cell">
                          <Sparkline values={series.length ? series : [0, 0]} label={`calls per second of ${s.serverId}`} />
                          <span className="small mono">{now.toFixed(1)}/s</span>
                        </span>
                      </td>
                    </tr>
                  );
                })}
                {m?.available &&
                  silent.map((s) => (
                    <tr key={s.id} className="muted">
                      <td data-label="Server" className="mono">
                        <Link href={`/servers/${encodeURIComponent(s.id)}`}>{s.id}</Link>
                      </td>
                      <td colSpan={7}>no call since the gateway started</td>
                    </tr>
                  ))}
              </tbody>
            </table>
          </div>
        )}
      </section>
    </section>
  );
}
