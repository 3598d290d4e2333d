// One server: its settings (secret masked), its workers per replica, live, with the
// last failure; Restart, activate/deactivate, edit, delete; and its tools.

import { useEffect, useState } from 'react';
import { useQueryClient } from '@tanstack/react-query';
import { Link, useLocation } from 'wouter';
import { api, ApiError, enc } from '../lib/api';
import { markDeleted, unmarkDeleted } from '../lib/events';
import { useRuntime, useServer, useTools } from '../lib/queries';
import { ago, breakerOpenedBy, breakerRule, formatMs, formatTime, serverState } from '../lib/status';
import { StatusBadge } from '../components/Badge';
import { ConfirmButton } from '../components/Confirm';
import { ErrorMessage, Loading } from '../components/QueryState';
import type { BreakerState, Resilience, ServerConfig, ServerView, WorkerRecord } from '../lib/types';

function useNow(intervalMs = 1000) {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), intervalMs);
    return () => clearInterval(t);
  }, [intervalMs]);
  return now;
}

function configOf(server: ServerView): ServerConfig {
  // eslint-disable-next-line @typescript-eslint/no-unused-vars
  const { id, toolCount, ...config } = server;
  return config;
}

const BREAKER_LABEL: Record<BreakerState, [string, string]> = {
  closed: ['closed', 'tone-ok'],
  open: ['open: calls fail fast', 'tone-bad'],
  half_open: ['half-open: probing', 'tone-warn'],
};

/** The breaker's state (one per server, per replica) and its counters. */
function Breaker({ server, resilience }: { server: ServerView; resilience?: Resilience }) {
  if (!resilience) {
    return (
      <span className="muted">
        {server.circuitBreaker || server.retry ? 'closed (no guarded call yet)' : 'not configured'}
      </span>
    );
  }
  const r = resilience;
  const openedBy = breakerOpenedBy(r);
  return (
    <>
      <span className={`badge ${BREAKER_LABEL[r.state][1]}`}>{BREAKER_LABEL[r.state][0]}</span>{' '}
      {openedBy && (
        <>
          <span data-testid="worker-breaker-reason" data-reason={r.openedBy?.kind}>
            — {openedBy}
          </span>{' '}
        </>
      )}
      <span className="muted small">
        {r.consecutiveFailures} failures in a row
        {server.circuitBreaker ? ` (opens at ${server.circuitBreaker.failureThreshold ?? 5})` : ''} · opened {r.opened}× · {r.rejected} rejected · {r.retries} retries
        {r.retriesRefusedByBudget > 0 ? ` (${r.retriesRefusedByBudget} refused by budget)` : ''}
      </span>
    </>
  );
}

function Workers({ server, workers }: { server: ServerView; workers: WorkerRecord[] }) {
  const now = useNow();
  if (workers.length === 0) {
    return (
      <p className="muted" data-testid="no-workers">
        {server.active
          ? 'No worker record yet: the supervisor starts one within seconds of registration (is mcp-supervisor running?).'
          : 'The server is inactive: it has no worker.'}
      </p>
    );
  }
  return (
    <div className="workers">
      {workers.map((w) => (
        <article className="worker card" key={w.replicaIdx} data-testid="worker" data-replica={w.replicaIdx} data-status={w.status}>
          <header>
            <h3>Replica {w.replicaIdx}</h3>
            <StatusBadge status={w.status} />
          </header>
          <dl className="grid">
            <dt>PID</dt>
            <dd className="mono" data-testid="worker-pid">
              {w.pid ?? '—'}
            </dd>
            <dt>Address</dt>
            <dd className="mono">{w.host && w.port ? `${w.host}:${w.port}` : '—'}</dd>
            <dt>Health</dt>
            <dd>
              {w.status === 'running'
                ? 'healthy'
                : w.status === 'unhealthy'
                  ? 'failing health checks'
                  : w.status === 'starting'
                    ? 'waiting for /healthz'
                    : '—'}
            </dd>
            <dt>Last heartbeat</dt>
            <dd title={formatTime(w.lastHeartbeat)}>{ago(w.lastHeartbeat, now)}</dd>
            <dt>Started at</dt>
            <dd>{formatTime(w.startedAt)}</dd>
            <dt>Restarts</dt>
            <dd data-testid="worker-restarts">{w.restarts}</dd>
            <dt>Supervisor</dt>
            <dd className="mono small">{w.supervisorId ?? '—'}</dd>
            <dt>Circuit breaker</dt>
            <dd data-testid="worker-breaker" data-breaker={w.resilience?.state ?? 'none'}>
              <Breaker server={server} resilience={w.resilience} />
            </dd>
            {w.reason && (
              <>
                <dt>Reason</dt>
                <dd>{w.reason}</dd>
              </>
            )}
          </dl>
          <div className={`failure${w.lastFailure ? '' : ' none'}`} data-testid="last-failure">
            <strong>Last failure:</strong>{' '}
            {w.lastFailure ? (
              <>
                {w.lastFailure} <span className="muted">({formatTime(w.lastFailureAt)}, {ago(w.lastFailureAt, now)})</span>
              </>
            ) : (
              <span className="muted">none</span>
            )}
          </div>
        </article>
      ))}
    </div>
  );
}

export function ServerDetail({ id }: { id: string }) {
  const server = useServer(id);
  const tools = useTools(id, server.isSuccess);
  const runtime = useRuntime();
  const client = useQueryClient();
  const [, navigate] = useLocation();
  const [notice, setNotice] = useState<string | null>(null);
  const [actionError, setActionError] = useState<unknown>(null);

  if (server.error) {
    return (
      <section className="page">
        <p>
          <Link href="/">← Servers</Link>
        </p>
        {server.error instanceof ApiError && server.error.status === 404 ? (
          <div className="empty">
            <h1>No server “{id}”</h1>
            <p>It is not registered (or was just deleted).</p>
          </div>
        ) : (
          <ErrorMessage error={server.error} />
        )}
      </section>
    );
  }
  if (!server.data) return <section className="page"><Loading what="the server" /></section>;

  const s = server.data;
  const workers = runtime.data?.find((r) => r.serverId === id)?.workers ?? [];
  const state = serverState(s, workers);

  const act = async (what: () => Promise<unknown>, done: string) => {
    setActionError(null);
    setNotice(null);
    try {
      await what();
      setNotice(done);
    } catch (err) {
      setActionError(err);
    }
  };

  return (
    <section className="page">
      <p className="crumbs">
        <Link href="/">← Servers</Link>
      </p>
      <div className="page-head">
        <div>
          <h1>{s.name || s.id}</h1>
          <p className="muted mono">{s.id}</p>
        </div>
        <div className="actions wrap">
          <StatusBadge status={state.status} />
          <Link href={`/servers/${enc(id)}/edit`} className="button">
            Edit
          </Link>
          <button
            type="button"
            onClick={() =>
              act(
                () => api.post(`api/servers/${enc(id)}`, { ...configOf(s), active: !s.active }),
                s.active ? 'Deactivated: the supervisor stops its workers.' : 'Activated: the supervisor starts its workers.',
              )
            }
          >
            {s.active ? 'Deactivate' : 'Activate'}
          </button>
          <ConfirmButton
            label="Restart"
            title={`Restart ${s.id}?`}
            confirmLabel="Restart workers"
            disabled={!s.active}
            onConfirm={() =>
              act(() => api.post(`api/servers/${enc(id)}/restart`), 'Restart requested: watch the workers below.')
            }
          >
            <p>Every worker of this server is replaced; calls in flight on it may fail.</p>
          </ConfirmButton>
          <ConfirmButton
            label="Delete"
            danger
            title={`Delete ${s.id}?`}
            confirmLabel="Delete server and tools"
            onConfirm={async () => {
              // Marked first: the tools' delete events arrive before the answer, and
              // must not refetch a server that is already gone.
              markDeleted(client, id);
              try {
                await api.delete(`api/servers/${enc(id)}`);
                void client.invalidateQueries({ queryKey: ['servers'] });
                navigate('/');
              } catch (err) {
                unmarkDeleted(id);
                void client.invalidateQueries({ queryKey: ['server', id] });
                setActionError(err);
              }
            }}
          >
            <p>
              The server and its {s.toolCount} tool{s.toolCount === 1 ? '' : 's'} are removed from the registry and its
              workers are stopped. This cannot be undone (export the registry first to keep a copy).
            </p>
          </ConfirmButton>
        </div>
      </div>
      {notice && (
        <div className="banner ok" role="status">
          {notice}
        </div>
      )}
      {actionError ? <ErrorMessage error={actionError} /> : null}

      <div className="columns">
        <section className="card" aria-labelledby="settings-title">
          <h2 id="settings-title">Settings</h2>
          <dl className="grid" data-testid="settings">
            <dt>Base URL</dt>
            <dd className="mono url">{s.baseUrl}</dd>
            <dt>Active</dt>
            <dd>{s.active ? 'yes' : 'no'}</dd>
            <dt>Auth</dt>
            <dd>
              {s.auth?.type ?? 'none'}
              {s.auth?.key && (
                <>
                  {' '}
                  <span className="mono">{s.auth.key}</span>
                </>
              )}
              {s.auth?.value && <span className="mono secret"> ••••••••</span>}
            </dd>
            <dt>Timeout</dt>
            <dd>{formatMs(s.timeoutMs ?? 30000)}{s.timeoutMs === undefined && <span className="muted"> (default)</span>}</dd>
            <dt>Replicas</dt>
            <dd>
              {state.running}/{s.replicas ?? 1} running
            </dd>
            <dt>Circuit breaker</dt>
            <dd data-testid="settings-breaker">
              {s.circuitBreaker ? (
                <>
                  {breakerRule(s.circuitBreaker)}
                  <div className="muted small mono">
                    {(['failureThreshold', 'coolDownMs', 'errorRatePercent', 'windowMs', 'minCalls'] as const)
                      .filter((f) => s.circuitBreaker?.[f] !== undefined)
                      .map((f) => `${f} ${s.circuitBreaker?.[f]}`)
                      .join(' · ') || 'all defaults'}
                  </div>
                </>
              ) : (
                <span className="muted">none</span>
              )}
            </dd>
            <dt>Headers</dt>
            <dd>
              {Object.keys(s.defaultHeaders ?? {}).length === 0 ? (
                <span className="muted">none</span>
              ) : (
                <ul className="plain mono small">
                  {Object.entries(s.defaultHeaders ?? {}).map(([k, v]) => (
                    <li key={k}>
                      {k}: {v}
                    </li>
                  ))}
                </ul>
              )}
            </dd>
          </dl>
        </section>
        <section className="card" aria-labelledby="workers-title">
          <h2 id="workers-title">
            Workers <span className="muted small">{state.running}/{state.desired} running · {state.restarts} restarts</span>
          </h2>
          <Workers server={s} workers={workers} />
        </section>
      </div>

      <section className="card" aria-labelledby="tools-title">
        <div className="section-head">
          <h2 id="tools-title">Tools</h2>
          <Link href={`/servers/${enc(id)}/tools/new`} className="button small primary">
            + New tool
          </Link>
        </div>
        {tools.error ? <ErrorMessage error={tools.error} /> : null}
        {tools.data && tools.data.length === 0 && <p className="muted">No tool yet: add one per REST endpoint.</p>}
        {tools.data && tools.data.length > 0 && (
          <div className="table-wrap">
            <table data-testid="tools-table">
              <thead>
                <tr>
                  <th>Tool</th>
                  <th>Call</th>
                  <th>Active</th>
                  <th>
                    <span className="visually-hidden">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {tools.data.map((t) => (
                  <tr key={t.name} data-tool={t.name}>
                    <td data-label="Tool">
                      <span className="strong mono">{t.name}</span>
                      {t.description && <div className="muted small">{t.description}</div>}
                    </td>
                    <td data-label="Call" className="mono small">
                      <span className={`method m-${t.method}`}>{t.method}</span> {t.pathTemplate || '/'}
                      {t.responseMapping?.pick && <div className="muted">pick {t.responseMapping.pick}</div>}
                    </td>
                    <td data-label="Active">{t.active ? 'yes' : <span className="muted">no</span>}</td>
                    <td className="row-actions">
                      <Link href={`/console?server=${enc(id)}&tool=${enc(t.name)}`} className="button small">
                        Test
                      </Link>
                      <Link href={`/servers/${enc(id)}/tools/${enc(t.name)}/edit`} className="button small">
                        Edit
                      </Link>
                      <ConfirmButton
                        label="Delete"
                        danger
                        small
                        title={`Delete tool ${t.name}?`}
                        confirmLabel="Delete tool"
                        onConfirm={() => act(() => api.delete(`api/tools/${enc(id)}/${enc(t.name)}`), `Tool ${t.name} deleted.`)}
                      >
                        <p>Clients calling it get 404 from now on.</p>
                      </ConfirmButton>
                    </td>
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
