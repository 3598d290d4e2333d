// The servers list (the console's home): every registered server with its live worker
// state, pushed by the event stream. Search by id, name or URL; filter by state.

import { useMemo, useState } from 'react';
import { Link } from 'wouter';
import { useRuntime, useServers } from '../lib/queries';
import { serverState, type ServerState } from '../lib/status';
import { StatusBadge } from '../components/Badge';
import { ErrorMessage, Loading } from '../components/QueryState';
import type { WorkerRecord } from '../lib/types';

type Filter = 'all' | 'running' | 'attention' | 'inactive';

function matchesFilter(state: ServerState, filter: Filter): boolean {
  switch (filter) {
    case 'running':
      return state.status === 'running';
    case 'attention':
      return !['running', 'inactive', 'idle'].includes(state.status);
    case 'inactive':
      return state.status === 'inactive';
    default:
      return true;
  }
}

export function ServersPage() {
  const servers = useServers();
  const runtime = useRuntime();
  const [search, setSearch] = useState('');
  const [filter, setFilter] = useState<Filter>('all');

  const workersById = useMemo(() => {
    const map = new Map<string, WorkerRecord[]>();
    for (const r of runtime.data ?? []) map.set(r.serverId, r.workers);
    return map;
  }, [runtime.data]);

  const rows = useMemo(() => {
    const q = search.trim().toLowerCase();
    return (servers.data ?? [])
      .map((s) => ({ server: s, state: serverState(s, workersById.get(s.id) ?? []) }))
      .filter(
        ({ server, state }) =>
          (!q || [server.id, server.name, server.baseUrl].some((t) => t.toLowerCase().includes(q))) &&
          matchesFilter(state, filter),
      );
  }, [servers.data, workersById, search, filter]);

  return (
    <section className="page">
      <div className="page-head">
        <h1>Servers</h1>
        <Link href="/servers/new" className="button primary">
          + New server
        </Link>
      </div>
      {servers.error ? <ErrorMessage error={servers.error} /> : null}
      {servers.isPending && !servers.error && <Loading what="servers" />}
      {servers.data && servers.data.length === 0 && (
        <div className="empty" data-testid="empty">
          <h2>No server is registered yet</h2>
          <p>
            Register a REST API as an MCP server: give it a base URL, then add one tool per endpoint. Or load a whole
            registry from a JSON export.
          </p>
          <p>
            <Link href="/servers/new" className="button primary">
              Register a server
            </Link>{' '}
            <Link href="/registry" className="button">
              Import a registry
            </Link>
          </p>
        </div>
      )}
      {servers.data && servers.data.length > 0 && (
        <>
          <div className="toolbar">
            <label className="search">
              <span className="visually-hidden">Search servers</span>
              <input
                type="search"
                placeholder="Search by id, name or URL"
                value={search}
                onChange={(e) => setSearch(e.target.value)}
              />
            </label>
            <label>
              <span className="visually-hidden">Filter by state</span>
              <select value={filter} onChange={(e) => setFilter(e.target.value as Filter)} aria-label="Filter by state">
                <option value="all">All states</option>
                <option value="running">Running</option>
                <option value="attention">Needs attention</option>
                <option value="inactive">Inactive</option>
              </select>
            </label>
            <span className="muted small">
              {rows.length} of {servers.data.length}
            </span>
          </div>
          <div className="table-wrap">
            <table className="servers" data-testid="servers-table">
              <thead>
                <tr>
                  <th>Server</th>
                  <th>Base URL</th>
                  <th>Active</th>
                  <th className="num">Tools</th>
                  <th>Worker</th>
                  <th className="num">Replicas</th>
                  <th>Ports</th>
                  <th className="num">Restarts</th>
                </tr>
              </thead>
              <tbody>
                {rows.map(({ server, state }) => (
                  <tr key={server.id} data-server={server.id}>
                    <td data-label="Server">
                      <Link href={`/servers/${encodeURIComponent(server.id)}`} className="strong">
                        {server.name || server.id}
                      </Link>
                      {server.name && server.name !== server.id && <div className="muted small mono">{server.id}</div>}
                    </td>
                    <td data-label="Base URL" className="mono small url">
                      {server.baseUrl}
                    </td>
                    <td data-label="Active">{server.active ? 'yes' : <span className="muted">no</span>}</td>
                    <td data-label="Tools" className="num">
                      {server.toolCount}
                    </td>
                    <td data-label="Worker" data-testid="worker-state">
                      <StatusBadge status={state.status} />
                    </td>
                    <td data-label="Replicas" className="num" data-testid="replicas">
                      {state.running}/{state.desired}
                    </td>
                    <td data-label="Ports" className="mono small">
                      {state.ports.join(', ') || '—'}
                    </td>
                    <td data-label="Restarts" className="num" data-testid="restarts">
                      {state.restarts}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
            {rows.length === 0 && <p className="muted">No server matches.</p>}
          </div>
        </>
      )}
      {runtime.error && !servers.error ? <ErrorMessage error={runtime.error} /> : null}
    </section>
  );
}
