// Import and export of the whole registry: download the export (secrets masked), and
// upload a document with a preview of what it will add, change or remove before the
// import runs, then its result.

import { useState } from 'react';
import { useQueryClient } from '@tanstack/react-query';
import { api, ApiError } from '../lib/api';
import { ErrorMessage } from '../components/QueryState';
import type { ImportSummary, RegistryDocument } from '../lib/types';

type Mode = 'merge' | 'replace';

interface Change {
  kind: 'server' | 'tool';
  id: string;
  change: 'add' | 'change' | 'same' | 'remove';
}

function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => a.localeCompare(b));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

function normalizeServer(value: unknown, id: string): unknown {
  const s = { ...(value as Record<string, unknown>) };
  if (!s.name) s.name = id;
  if (s.active === undefined) s.active = true;
  if (!s.auth) s.auth = { type: 'none' };
  if (s.defaultHeaders && Object.keys(s.defaultHeaders as object).length === 0) delete s.defaultHeaders;
  return s;
}

export function diff(current: RegistryDocument, incoming: RegistryDocument, mode: Mode): Change[] {
  const changes: Change[] = [];
  const servers = incoming.servers ?? {};
  for (const [id, server] of Object.entries(servers)) {
    const old = current.servers?.[id];
    changes.push({
      kind: 'server',
      id,
      change: !old ? 'add' : canonical(normalizeServer(old, id)) === canonical(normalizeServer(server, id)) ? 'same' : 'change',
    });
  }
  for (const [id, tools] of Object.entries(incoming.tools ?? {})) {
    for (const [name, tool] of Object.entries(tools ?? {})) {
      const old = current.tools?.[id]?.[name];
      const full = { name, ...(tool as object) };
      changes.push({
        kind: 'tool',
        id: `${id}/${name}`,
        change: !old ? 'add' : canonical(old) === canonical({ ...old, ...full }) ? 'same' : 'change',
      });
    }
  }
  if (mode === 'replace') {
    for (const id of Object.keys(current.servers ?? {})) {
      if (!(id in servers)) changes.push({ kind: 'server', id, change: 'remove' });
    }
    for (const [id, tools] of Object.entries(current.tools ?? {})) {
      for (const name of Object.keys(tools ?? {})) {
        if (!incoming.tools?.[id]?.[name]) changes.push({ kind: 'tool', id: `${id}/${name}`, change: 'remove' });
      }
    }
  }
  return changes;
}

export function ImportExport() {
  const client = useQueryClient();
  const [exportError, setExportError] = useState<unknown>(null);
  const [exported, setExported] = useState<string | null>(null);
  const [fileName, setFileName] = useState('');
  const [doc, setDoc] = useState<RegistryDocument | null>(null);
  const [parseError, setParseError] = useState<string | null>(null);
  const [current, setCurrent] = useState<RegistryDocument | null>(null);
  const [mode, setMode] = useState<Mode>('merge');
  const [importError, setImportError] = useState<ApiError | null>(null);
  const [summary, setSummary] = useState<ImportSummary | null>(null);
  const [busy, setBusy] = useState(false);

  const download = async () => {
    setExportError(null);
    try {
      const document = await api.get<RegistryDocument>('api/export');
      const text = `${JSON.stringify(document, null, 2)}\n`;
      const url = URL.createObjectURL(new Blob([text], { type: 'application/json' }));
      const a = window.document.createElement('a');
      a.href = url;
      a.download = `mcp-registry-${new Date().toISOString().slice(0, 19).replace(/[:T]/g, '-')}.json`;
      window.document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
      const servers = Object.keys(document.servers ?? {}).length;
      const tools = Object.values(document.tools ?? {}).reduce((n, t) => n + Object.keys(t).length, 0);
      setExported(
        `Exported ${servers} server${servers === 1 ? '' : 's'} and ${tools} tool${tools === 1 ? '' : 's'} (secrets masked) as ${a.download}.`,
      );
    } catch (err) {
      setExportError(err);
    }
  };

  const choose = async (file: File | undefined) => {
    setDoc(null);
    setParseError(null);
    setSummary(null);
    setImportError(null);
    if (!file) return;
    setFileName(file.name);
    try {
      const parsed = JSON.parse(await file.text()) as RegistryDocument;
      if (!parsed || typeof parsed !== 'object' || typeof parsed.servers !== 'object') {
        setParseError('This file is JSON but not a registry document (it has no "servers" object).');
        return;
      }
      setDoc(parsed);
      setCurrent(await api.get<RegistryDocument>('api/export'));
    } catch (err) {
      setParseError(err instanceof ApiError ? err.message : `Not valid JSON: ${String(err)}`);
    }
  };

  const run = async () => {
    if (!doc) return;
    setBusy(true);
    setImportError(null);
    try {
      const result = await api.post<ImportSummary>(`api/import?mode=${mode}`, doc);
      setSummary(result);
      setCurrent(await api.get<RegistryDocument>('api/export'));
      void client.invalidateQueries();
    } catch (err) {
      setImportError(err instanceof ApiError ? err : new ApiError(0, 'unknown', String(err)));
    } finally {
      setBusy(false);
    }
  };

  const changes = doc && current ? diff(current, doc, mode) : [];
  const count = (c: Change['change']) => changes.filter((x) => x.change === c).length;

  return (
    <section className="page">
      <h1>Import / export</h1>
      <div className="columns">
        <section className="card" aria-labelledby="export-title">
          <h2 id="export-title">Export</h2>
          <p>
            The whole registry, every server and tool, as one JSON document. Secrets are masked (<code>********</code>);
            importing it back keeps the stored ones.
          </p>
          <button type="button" className="primary" onClick={download}>
            Download export
          </button>
          {exported && (
            <p className="ok-text" role="status" data-testid="export-result">
              {exported}
            </p>
          )}
          {exportError ? <ErrorMessage error={exportError} /> : null}
        </section>
        <section className="card" aria-labelledby="import-title">
          <h2 id="import-title">Import</h2>
          <p>An export of this hub, or the existing hub's dump. It is validated in full before anything is written.</p>
          <label className="field">
            <span>Registry document (JSON)</span>
            <input type="file" accept="application/json,.json" data-testid="import-file" onChange={(e) => void choose(e.target.files?.[0])} />
          </label>
          <fieldset className="radio-row">
            <legend>Mode</legend>
            <label>
              <input type="radio" name="mode" checked={mode === 'merge'} onChange={() => setMode('merge')} /> Merge (add and update)
            </label>
            <label>
              <input type="radio" name="mode" checked={mode === 'replace'} onChange={() => setMode('replace')} /> Replace (also remove what the file lacks)
            </label>
          </fieldset>
          {parseError && (
            <p className="error-text" role="alert">
              {parseError}
            </p>
          )}
        </section>
      </div>
      {doc && current && (
        <section className="card" aria-labelledby="preview-title" data-testid="import-preview">
          <div className="section-head">
            <h2 id="preview-title">Preview of {fileName}</h2>
            <span className="small">
              <span className="chg chg-add">{count('add')} new</span> <span className="chg chg-change">{count('change')} changed</span>{' '}
              <span className="chg chg-same">{count('same')} unchanged</span>{' '}
              {mode === 'replace' && <span className="chg chg-remove">{count('remove')} removed</span>}
            </span>
          </div>
          <div className="table-wrap">
            <table>
              <thead>
                <tr>
                  <th>Kind</th>
                  <th>Id</th>
                  <th>Change</th>
                </tr>
              </thead>
              <tbody>
                {changes
                  .filter((c) => c.change !== 'same')
                  .map((c) => (
                    <tr key={`${c.kind}:${c.id}`} data-change={c.change}>
                      <td data-label="Kind">{c.kind}</td>
                      <td data-label="Id" className="mono small">{c.id}</td>
                      <td data-label="Change"><span className={`chg chg-${c.change}`}>{c.change}</span></td>
                    </tr>
                  ))}
              </tbody>
            </table>
            {changes.every((c) => c.change === 'same') && <p className="muted">Nothing would change.</p>}
          </div>
          {importError && (
            <div className="banner bad" role="alert" data-testid="import-error">
              <strong>{importError.status === 422 ? 'The document is invalid; nothing was imported.' : importError.message}</strong>
              {importError.details.length > 0 && (
                <ul>
                  {importError.details.map((p) => (
                    <li key={p.field + p.message}>
                      <code>{p.field}</code> {p.message}
                    </li>
                  ))}
                </ul>
              )}
            </div>
          )}
          {summary && (
            <div className="banner ok" role="status" data-testid="import-result">
              Imported {summary.servers} servers and {summary.tools} tools
              {mode === 'replace' && `, removed ${summary.removedServers} servers and ${summary.removedTools} tools`}.
            </div>
          )}
          <div className="actions">
            <button type="button" className="primary" disabled={busy} onClick={run}>
              Import ({mode})
            </button>
          </div>
        </section>
      )}
    </section>
  );
}
