// The audit log of tool calls (GET /api/audit): a table with filters (server, tool,
// status, request id), older pages by cursor, and a live follow of new entries
// (GET /api/audit/stream, read with fetch so the token can be sent).

import { useEffect, useState } from 'react';
import { useQuery } from '@tanstack/react-query';
import { authHeaders, hubUrl, request } from '../lib/api';
import { readSse } from '../lib/sse';

export interface AuditEntry {
  id: string;
  ts: number;
  requestId: string;
  server: string;
  tool: string;
  transport: string;
  caller?: string;
  session?: string;
  status: string;
  latencyMs: number;
  restStatus?: number;
  error?: string;
  argsBytes: number;
  resultBytes: number;
  args?: string;
}

interface AuditPage {
  entries: AuditEntry[];
  next?: string;
  scanned: number;
}

interface Filters {
  server: string;
  tool: string;
  status: string;
  requestId: string;
}

const EMPTY: Filters = { server: '', tool: '', status: '', requestId: '' };
const LIVE_MAX = 500;

function query(filters: Filters, extra: Record<string, string> = {}): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries({ ...filters, ...extra })) if (v) params.set(k, v);
  const text = params.toString();
  return text ? `?${text}` : '';
}

export function Audit() {
  const [draft, setDraft] = useState<Filters>(EMPTY);
  const [filters, setFilters] = useState<Filters>(EMPTY);
  const [older, setOlder] = useState<AuditEntry[]>([]);
  // undefined: the first page's cursor; null: no older entries.
  const [cursor, setCursor] = useState<string | null | undefined>(undefined);
  const [live, setLive] = useState<AuditEntry[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(false);
  const [follow, setFollow] = useState(false);
  const first = useQuery({
    queryKey: ['audit', filters],
    queryFn: () => request<AuditPage>('GET', `api/audit${query(filters, { limit: '50' })}`),
  });
  const next = cursor === undefined ? first.data?.next : (cursor ?? undefined);
  const seen = new Set<string>();
  const entries = [...live, ...(first.data?.entries ?? []), ...older].filter((e) => {
    if (seen.has(e.id)) return false;
    seen.add(e.id);
    return true;
  });

  function apply(f: Filters) {
    setFilters(f);
    setOlder([]);
    setLive([]);
    setCursor(undefined);
  }

  async function loadOlder(before: string) {
    setLoading(true);
    setError(null);
    try {
      const page = await request<AuditPage>('GET', `api/audit${query(filters, { before, limit: '50' })}`);
      setOlder((old) => [...old, ...page.entries]);
      setCursor(page.next ?? null);
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    } finally {
      setLoading(false);
    }
  }

  useEffect(() => {
    if (!follow) return;
    const controller = new AbortController();
    void (async () => {
      try {
        const response = await fetch(hubUrl(`api/audit/stream${query(filters)}`), {
          headers: { Accept: 'text/event-stream', ...authHeaders() },
          signal: controller.signal,
        });
        await readSse(
          response,
          (event) => {
            if (event.event !== 'audit') return;
            try {
              const entry = JSON.parse(event.data) as AuditEntry;
              setLive((old) => [entry, ...old].slice(0, LIVE_MAX));
            } catch {
              /* a malformed event is skipped */
            }
          },
          controller.signal,
        );
      } catch {
        /* aborted or the stream broke: the toggle shows it is off */
        if (!controller.signal.aborted) setFollow(false);
      }
    })();
    return () => controller.abort();
  }, [follow, filters]);

  const field = (name: keyof Filters, label: string) => (
    <label>
      {label}
      <input
        name={name}
        value={draft[name]}
        onChange={(e) => setDraft({ ...draft, [name]: e.target.value })}
        data-testid={`audit-filter-${name}`}
      />
    </label>
  );

  return (
    <section>
      <h1>Audit log</h1>
      <p className="muted">One entry per tool call, from the hub&apos;s Redis Stream. Arguments appear only for servers registered with audit.includeArguments.</p>
      <form
        className="card filters"
        onSubmit={(e) => {
          e.preventDefault();
          apply(draft);
        }}
      >
        {field('server', 'Server')}
        {field('tool', 'Tool')}
        <label>
          Status
          <select value={draft.status} onChange={(e) => setDraft({ ...draft, status: e.target.value })} data-testid="audit-filter-status">
            <option value="">any</option>
            <option value="ok">ok</option>
            <option value="error">error</option>
            <option value="cancelled">cancelled</option>
          </select>
        </label>
        {field('requestId', 'Request id')}
        <button type="submit" data-testid="audit-apply">Apply</button>
        <label className="inline">
          <input type="checkbox" checked={follow} onChange={(e) => setFollow(e.target.checked)} data-testid="audit-follow" /> Live
        </label>
      </form>
      {(error ?? first.error) && (
        <p role="alert" className="error">
          {error ?? (first.error instanceof Error ? first.error.message : String(first.error))}
        </p>
      )}
      <table className="table" data-testid="audit-table">
        <thead>
          <tr>
            <th>time</th>
            <th>server</th>
            <th>tool</th>
            <th>transport</th>
            <th>status</th>
            <th>REST</th>
            <th>latency</th>
            <th>args / result</th>
            <th>caller</th>
            <th>request id</th>
          </tr>
        </thead>
        <tbody>
          {entries.map((e) => (
            <tr key={e.id} data-testid="audit-row" data-request-id={e.requestId}>
              <td>{new Date(e.ts).toLocaleTimeString()}</td>
              <td>{e.server}</td>
              <td>{e.tool}</td>
              <td>{e.transport}</td>
              <td className={e.status === 'ok' ? 'ok' : 'bad'}>{e.error ? `${e.status} (${e.error})` : e.status}</td>
              <td>{e.restStatus ?? ''}</td>
              <td>{e.latencyMs.toFixed(1)} ms</td>
              <td title={e.args}>
                {e.argsBytes} B / {e.resultBytes} B
              </td>
              <td>{e.caller ?? ''}</td>
              <td>
                <code>{e.requestId}</code>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {entries.length === 0 && !first.isPending && <p className="muted">No entries.</p>}
      {next && (
        <button type="button" disabled={loading} onClick={() => void loadOlder(next)} data-testid="audit-older">
          Older
        </button>
      )}
    </section>
  );
}
