// Import tools from an OpenAPI 3.0/3.1 document (POST /api/servers/{id}/openapi): the
// document pasted, uploaded or given by URL; a dry run first shows what would be
// created, changed and removed, then Apply writes it.

import { useState } from 'react';
import { useQueryClient } from '@tanstack/react-query';
import { enc, request } from '../lib/api';

interface Report {
  server: string;
  dryRun: boolean;
  serverCreated: boolean;
  baseUrl: string;
  created: string[];
  changed: string[];
  unchanged: string[];
  removed: string[];
  skipped: { operation?: string; reason?: string }[];
  warnings: string[];
}

function List({ title, names, kind }: { title: string; names: string[]; kind: string }) {
  return (
    <div className="card" data-testid={`openapi-${kind}`}>
      <h3>
        {title} ({names.length})
      </h3>
      {names.length > 0 && (
        <ul>
          {names.map((n) => (
            <li key={n} data-tool={n}>
              <code>{n}</code>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

export function OpenApiImport() {
  const client = useQueryClient();
  const [serverId, setServerId] = useState('');
  const [source, setSource] = useState<'text' | 'url'>('text');
  const [text, setText] = useState('');
  const [url, setUrl] = useState('');
  const [baseUrl, setBaseUrl] = useState('');
  const [prefix, setPrefix] = useState('');
  const [mode, setMode] = useState<'merge' | 'replace'>('merge');
  const [report, setReport] = useState<Report | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function run(dryRun: boolean) {
    setBusy(true);
    setError(null);
    try {
      const body: Record<string, unknown> = { mode, dryRun, prefix };
      if (source === 'url') body.url = url;
      else body.document = text;
      if (baseUrl) body.baseUrl = baseUrl;
      const answer = await request<Report>('POST', `api/servers/${enc(serverId)}/openapi`, body);
      setReport(answer);
      if (!dryRun) void client.invalidateQueries();
    } catch (err) {
      setReport(null);
      setError(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  }

  const ready = serverId.trim() !== '' && (source === 'url' ? url.trim() !== '' : text.trim() !== '');

  return (
    <section>
      <h1>Import from OpenAPI</h1>
      <p className="muted">One tool per operation of an OpenAPI 3.0 or 3.1 document (JSON or YAML). Preview first: nothing is written until Apply.</p>
      <form
        className="card form"
        onSubmit={(e) => {
          e.preventDefault();
          void run(true);
        }}
      >
        <label>
          Server id
          <input value={serverId} onChange={(e) => setServerId(e.target.value)} data-testid="openapi-server" required />
        </label>
        <fieldset className="filters">
          <legend>Document</legend>
          <label className="inline">
            <input type="radio" name="source" checked={source === 'text'} onChange={() => setSource('text')} /> Paste or upload
          </label>
          <label className="inline">
            <input type="radio" name="source" checked={source === 'url'} onChange={() => setSource('url')} data-testid="openapi-source-url" /> URL
          </label>
        </fieldset>
        {source === 'text' ? (
          <>
            <label>
              Document (JSON or YAML)
              <textarea rows={12} value={text} onChange={(e) => setText(e.target.value)} data-testid="openapi-document" spellCheck={false} />
            </label>
            <label>
              Or upload a file
              <input
                type="file"
                accept=".json,.yaml,.yml,application/json,application/yaml"
                data-testid="openapi-file"
                onChange={(e) => {
                  const file = e.target.files?.[0];
                  if (file) void file.text().then(setText);
                }}
              />
            </label>
          </>
        ) : (
          <label>
            Document URL
            <input type="url" value={url} onChange={(e) => setUrl(e.target.value)} data-testid="openapi-url" placeholder="https://example.com/openapi.json" />
          </label>
        )}
        <div className="filters">
          <label>
            Base URL (for a new server)
            <input value={baseUrl} onChange={(e) => setBaseUrl(e.target.value)} data-testid="openapi-base-url" placeholder="from the document's servers" />
          </label>
          <label>
            Name prefix
            <input value={prefix} onChange={(e) => setPrefix(e.target.value)} data-testid="openapi-prefix" />
          </label>
          <label>
            Mode
            <select value={mode} onChange={(e) => setMode(e.target.value as 'merge' | 'replace')} data-testid="openapi-mode">
              <option value="merge">merge (keep other tools)</option>
              <option value="replace">replace (remove other tools)</option>
            </select>
          </label>
        </div>
        <div className="actions">
          <button type="submit" disabled={!ready || busy} data-testid="openapi-preview">
            Preview
          </button>
          <button type="button" className="primary" disabled={!ready || busy || !report?.dryRun} onClick={() => void run(false)} data-testid="openapi-apply">
            Apply
          </button>
        </div>
      </form>
      {error && (
        <p role="alert" className="error" data-testid="openapi-error">
          {error}
        </p>
      )}
      {report && (
        <div data-testid="openapi-report" data-dry-run={String(report.dryRun)}>
          <h2>{report.dryRun ? 'Preview: nothing written yet' : `Imported into ${report.server}`}</h2>
          {report.serverCreated && (
            <p>
              {report.dryRun ? 'Would register' : 'Registered'} server <code>{report.server}</code> with base URL <code>{report.baseUrl}</code>.
            </p>
          )}
          <div className="report-grid">
            <List title="Created" names={report.created} kind="created" />
            <List title="Changed" names={report.changed} kind="changed" />
            <List title="Removed" names={report.removed} kind="removed" />
            <List title="Unchanged" names={report.unchanged} kind="unchanged" />
          </div>
          {report.warnings.length > 0 && (
            <ul className="muted">
              {report.warnings.map((w) => (
                <li key={w}>{w}</li>
              ))}
            </ul>
          )}
        </div>
      )}
    </section>
  );
}
