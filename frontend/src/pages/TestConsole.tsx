// The test call console (what the MCP Inspector is to MCP servers, built in): pick a
// tool, fill a form generated from its input JSON Schema (rjsf) or write raw JSON,
// call it through the gateway exactly as a client would (`POST /mcp/{id}/{tool}`), and
// watch the SSE events as they arrive. The gateway's validation errors are shown with
// their JSON pointer on the field they name. The last calls are kept in localStorage.

import { useMemo, useRef, useState } from 'react';
import Form from '@rjsf/core';
import type { ErrorSchema, RJSFSchema } from '@rjsf/utils';
import { useLocation, useSearch } from 'wouter';
import { enc, hubUrl } from '../lib/api';
import { readSse } from '../lib/sse';
import { useServers, useTools } from '../lib/queries';
import { validator, violationsToErrorSchema } from '../lib/validator';
import { JsonEditor, jsonSyntaxError } from '../components/JsonEditor';
import { ErrorMessage } from '../components/QueryState';
import { formatMs } from '../lib/status';

const HISTORY_KEY = 'mcp-hub.call-history';
const HISTORY_MAX = 20;

interface ReceivedEvent {
  event: string;
  data: string;
  atMs: number;
}

interface Violation {
  pointer: string;
  message: string;
}

interface CallResult {
  status: number;
  requestId?: string;
  latencyMs?: number;
  events: ReceivedEvent[];
  error?: { code: string; message: string; details?: Violation[] };
  networkError?: string;
  done: boolean;
}

interface HistoryEntry {
  at: number;
  server: string;
  tool: string;
  args: unknown;
  status: number;
  requestId?: string;
  latencyMs?: number;
  outcome: string;
}

function loadHistory(): HistoryEntry[] {
  try {
    const parsed = JSON.parse(localStorage.getItem(HISTORY_KEY) ?? '[]') as unknown;
    return Array.isArray(parsed) ? (parsed as HistoryEntry[]) : [];
  } catch {
    return [];
  }
}

function saveHistory(entries: HistoryEntry[]) {
  try {
    localStorage.setItem(HISTORY_KEY, JSON.stringify(entries.slice(0, HISTORY_MAX)));
  } catch {
    // Storage full or disabled: the history is a convenience.
  }
}

function pretty(data: string): string {
  try {
    return JSON.stringify(JSON.parse(data), null, 2);
  } catch {
    return data;
  }
}

function outcomeOf(result: CallResult): string {
  if (result.networkError) return 'network error';
  if (result.error) return result.error.code;
  const last = result.events[result.events.length - 1];
  if (last?.event === 'tool_call.completed') return 'completed';
  if (last?.event === 'tool_call.error') return 'tool error';
  return result.done ? 'ended' : 'running';
}

export function TestConsole() {
  const search = useSearch();
  const [, navigate] = useLocation();
  const params = new URLSearchParams(search);
  const serverId = params.get('server') ?? '';
  const toolName = params.get('tool') ?? '';
  const servers = useServers();
  const tools = useTools(serverId, serverId !== '');
  const tool = tools.data?.find((t) => t.name === toolName);

  const [mode, setMode] = useState<'form' | 'raw'>('form');
  const [formData, setFormData] = useState<unknown>({});
  const [raw, setRaw] = useState('{}\n');
  const [result, setResult] = useState<CallResult | null>(null);
  const [history, setHistory] = useState<HistoryEntry[]>(loadHistory);
  const abort = useRef<AbortController | null>(null);

  const select = (server: string, name: string) => {
    const q = new URLSearchParams();
    if (server) q.set('server', server);
    if (name) q.set('tool', name);
    navigate(`/console${q.toString() ? `?${q}` : ''}`);
  };

  // A new tool starts from empty arguments (state adjusted while rendering, as React
  // recommends over an effect).
  const selection = `${serverId}/${toolName}`;
  const [shown, setShown] = useState(selection);
  if (shown !== selection) {
    setShown(selection);
    setFormData({});
    setRaw('{}\n');
    setResult(null);
  }

  const rawError = mode === 'raw' ? jsonSyntaxError(raw) : null;
  const extraErrors: ErrorSchema | undefined = useMemo(
    () => (result?.error?.details?.length ? violationsToErrorSchema(result.error.details) : undefined),
    [result],
  );

  const call = async (args: unknown) => {
    abort.current?.abort();
    const controller = new AbortController();
    abort.current = controller;
    const started = performance.now();
    const current: CallResult = { status: 0, events: [], done: false };
    const publish = () => setResult({ ...current, events: [...current.events] });
    publish();
    try {
      const response = await fetch(hubUrl(`mcp/${enc(serverId)}/${enc(toolName)}`), {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream' },
        body: JSON.stringify({ args }),
        signal: controller.signal,
      });
      current.status = response.status;
      current.requestId = response.headers.get('x-request-id') ?? undefined;
      publish();
      const type = response.headers.get('content-type') ?? '';
      if (type.includes('text/event-stream')) {
        await readSse(
          response,
          (event) => {
            current.events.push({ event: event.event, data: event.data, atMs: performance.now() - started });
            try {
              const data = JSON.parse(event.data) as { request_id?: string };
              if (data.request_id) current.requestId = data.request_id;
            } catch {
              // Not JSON: shown as text.
            }
            publish();
          },
          controller.signal,
        );
      } else {
        const text = await response.text();
        try {
          const body = JSON.parse(text) as { error?: CallResult['error'] & { request_id?: string } };
          if (body.error) {
            current.error = body.error;
            current.requestId = body.error.request_id ?? current.requestId;
            if (response.status === 404 && body.error.message === 'no such route') {
              // The admin API answered: the console was opened on it, not on the gateway.
              current.error = {
                ...body.error,
                message: 'this page is served by the admin API directly; open the dashboard through the gateway (port 8080) to make calls',
              };
            }
          }
        } catch {
          current.error = { code: `http_${response.status}`, message: text.slice(0, 500) };
        }
      }
    } catch (err) {
      if (!controller.signal.aborted) current.networkError = `The gateway cannot be reached: ${String(err)}`;
    }
    current.latencyMs = performance.now() - started;
    current.done = true;
    publish();
    const entry: HistoryEntry = {
      at: Date.now(),
      server: serverId,
      tool: toolName,
      args,
      status: current.status,
      requestId: current.requestId,
      latencyMs: current.latencyMs,
      outcome: outcomeOf(current),
    };
    setHistory((h) => {
      const next = [entry, ...h].slice(0, HISTORY_MAX);
      saveHistory(next);
      return next;
    });
  };

  const completed = result?.events.find((e) => e.event === 'tool_call.completed');
  let serverLatency: number | undefined;
  if (completed) {
    try {
      serverLatency = (JSON.parse(completed.data) as { latency_ms?: number }).latency_ms;
    } catch {
      serverLatency = undefined;
    }
  }

  return (
    <section className="page">
      <div className="page-head">
        <h1>Test console</h1>
      </div>
      <p className="muted">
        Calls go through the gateway exactly as an MCP client's: <code>POST /mcp/{'{server}'}/{'{tool}'}</code> with{' '}
        <code>{'{"args": …}'}</code>, answered with Server-Sent Events.
      </p>
      {servers.error ? <ErrorMessage error={servers.error} /> : null}
      <div className="toolbar">
        <label>
          <span>Server</span>
          <select aria-label="Server" value={serverId} onChange={(e) => select(e.target.value, '')}>
            <option value="">Choose a server…</option>
            {(servers.data ?? []).map((s) => (
              <option key={s.id} value={s.id}>
                {s.id}
              </option>
            ))}
          </select>
        </label>
        <label>
          <span>Tool</span>
          <select aria-label="Tool" value={toolName} disabled={!serverId} onChange={(e) => select(serverId, e.target.value)}>
            <option value="">Choose a tool…</option>
            {(tools.data ?? []).map((t) => (
              <option key={t.name} value={t.name}>
                {t.name}
              </option>
            ))}
          </select>
        </label>
      </div>
      {servers.data && servers.data.length === 0 && <p className="muted">No server is registered yet.</p>}

      <div className="console">
        <section className="card" aria-labelledby="args-title">
          <div className="section-head">
            <h2 id="args-title">Arguments</h2>
            <div className="segmented" role="group" aria-label="Argument editor">
              <button type="button" aria-pressed={mode === 'form'} onClick={() => {
                if (mode === 'raw' && !rawError) setFormData(JSON.parse(raw));
                setMode('form');
              }}>
                Form
              </button>
              <button type="button" aria-pressed={mode === 'raw'} onClick={() => {
                setRaw(`${JSON.stringify(formData ?? {}, null, 2)}\n`);
                setMode('raw');
              }}>
                Raw JSON
              </button>
            </div>
          </div>
          {!tool && <p className="muted">Pick a server and a tool.</p>}
          {tool && (
            <>
              {tool.description && <p className="muted">{tool.description}</p>}
              <p className="mono small">
                <span className={`method m-${tool.method}`}>{tool.method}</span> {tool.pathTemplate || '/'}
              </p>
              {mode === 'form' ? (
                <Form
                  key={`${serverId}/${toolName}`}
                  className="rjsf"
                  schema={tool.inputSchema as RJSFSchema}
                  formData={formData}
                  validator={validator}
                  noHtml5Validate
                  noValidate
                  showErrorList={false}
                  extraErrors={extraErrors}
                  onChange={(e) => setFormData(e.formData)}
                  onSubmit={(e) => void call(e.formData ?? {})}
                >
                  <div className="actions">
                    <button type="submit" className="primary">
                      Call {tool.name}
                    </button>
                  </div>
                </Form>
              ) : (
                <form
                  onSubmit={(e) => {
                    e.preventDefault();
                    if (!rawError) void call(JSON.parse(raw));
                  }}
                >
                  <JsonEditor label="Arguments (JSON)" value={raw} onChange={setRaw} minHeight={140} testId="raw-args" />
                  {rawError && (
                    <small className="error-text" role="alert">
                      JSON syntax error: {rawError}
                    </small>
                  )}
                  <div className="actions">
                    <button type="submit" className="primary" disabled={Boolean(rawError)}>
                      Call {tool.name}
                    </button>
                  </div>
                </form>
              )}
            </>
          )}
        </section>

        <section className="card" aria-labelledby="result-title" data-testid="result">
          <h2 id="result-title">Response</h2>
          {!result && <p className="muted">The events of the call appear here as they arrive.</p>}
          {result && (
            <>
              <dl className="grid result-meta">
                <dt>HTTP status</dt>
                <dd data-testid="http-status" className={result.status >= 400 || result.status === 0 ? 'error-text' : ''}>
                  {result.status || (result.done ? '—' : '…')}
                </dd>
                <dt>Request id</dt>
                <dd className="mono small" data-testid="request-id">
                  {result.requestId ?? '—'}
                </dd>
                <dt>Latency</dt>
                <dd data-testid="latency">
                  {result.done ? formatMs(result.latencyMs) : 'running…'}
                  {serverLatency !== undefined && <span className="muted"> (worker: {formatMs(serverLatency)})</span>}
                </dd>
                <dt>Outcome</dt>
                <dd data-testid="outcome">{outcomeOf(result)}</dd>
              </dl>
              {result.networkError && (
                <div className="banner bad" role="alert">
                  {result.networkError}
                </div>
              )}
              {result.error && (
                <div className="banner bad" role="alert" data-testid="call-error">
                  <strong>{result.error.code}</strong>: {result.error.message}
                  {result.error.details && result.error.details.length > 0 && (
                    <ul className="violations">
                      {result.error.details.map((v) => (
                        <li key={v.pointer + v.message}>
                          <code className="pointer" data-testid="pointer">
                            {v.pointer || '/'}
                          </code>{' '}
                          {v.message}
                        </li>
                      ))}
                    </ul>
                  )}
                </div>
              )}
              {result.events.length > 0 && (
                <ol className="events" data-testid="events">
                  {result.events.map((e, i) => (
                    <li key={i} className={`event ev-${e.event.replace(/\./g, '-')}`} data-event={e.event}>
                      <div className="event-head">
                        <span className="event-name">{e.event}</span>
                        <span className="muted small">+{e.atMs.toFixed(1)} ms</span>
                      </div>
                      <pre>{pretty(e.data)}</pre>
                    </li>
                  ))}
                </ol>
              )}
            </>
          )}
        </section>
      </div>

      <section className="card" aria-labelledby="history-title">
        <div className="section-head">
          <h2 id="history-title">Recent calls</h2>
          {history.length > 0 && (
            <button type="button" className="small" onClick={() => { setHistory([]); saveHistory([]); }}>
              Clear
            </button>
          )}
        </div>
        {history.length === 0 ? (
          <p className="muted">None yet; the last {HISTORY_MAX} calls are kept in this browser.</p>
        ) : (
          <div className="table-wrap">
            <table data-testid="history">
              <thead>
                <tr>
                  <th>When</th>
                  <th>Tool</th>
                  <th>Arguments</th>
                  <th>Status</th>
                  <th>Outcome</th>
                  <th className="num">Latency</th>
                  <th><span className="visually-hidden">Actions</span></th>
                </tr>
              </thead>
              <tbody>
                {history.map((h) => (
                  <tr key={`${h.at}-${h.requestId}`}>
                    <td data-label="When" className="small">{new Date(h.at).toLocaleTimeString()}</td>
                    <td data-label="Tool" className="mono small">{h.server}/{h.tool}</td>
                    <td data-label="Arguments" className="mono small truncate">{JSON.stringify(h.args)}</td>
                    <td data-label="Status">{h.status || '—'}</td>
                    <td data-label="Outcome">{h.outcome}</td>
                    <td data-label="Latency" className="num">{formatMs(h.latencyMs)}</td>
                    <td className="row-actions">
                      <button
                        type="button"
                        className="small"
                        onClick={() => {
                          select(h.server, h.tool);
                          setTimeout(() => {
                            setFormData(h.args);
                            setRaw(`${JSON.stringify(h.args, null, 2)}\n`);
                          }, 0);
                        }}
                      >
                        Load
                      </button>
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
