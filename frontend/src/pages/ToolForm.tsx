// Create or edit a tool: method, path template, where each argument goes (path,
// query, headers, body, raw body), the JSONPath pick, and the input JSON Schema in a
// code editor. JSON syntax errors show as you type; the whole tool is checked by the
// admin API (`…/validate`, the same rules and schema compiler as saving) before it can
// be saved, and each problem is shown next to its field.

import { useEffect, useMemo, useState, type FormEvent } from 'react';
import { useQueryClient } from '@tanstack/react-query';
import { Link, useLocation } from 'wouter';
import { api, ApiError, enc } from '../lib/api';
import { useTool } from '../lib/queries';
import { Field } from '../components/Field';
import { fromPairs, KeyValueEditor, toPairs, type Pairs } from '../components/KeyValue';
import { JsonEditor, jsonSyntaxError } from '../components/JsonEditor';
import { ErrorMessage, Loading } from '../components/QueryState';
import type { HttpMethod, ToolBinding } from '../lib/types';

const METHODS: HttpMethod[] = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'];
const DEFAULT_SCHEMA = '{\n  "type": "object",\n  "properties": {},\n  "additionalProperties": false\n}\n';

interface Draft {
  name: string;
  description: string;
  method: HttpMethod;
  pathTemplate: string;
  path: Pairs;
  query: Pairs;
  headers: Pairs;
  body: Pairs;
  rawBody: string;
  pick: string;
  active: boolean;
  schema: string;
}

function draftOf(tool?: ToolBinding): Draft {
  return {
    name: tool?.name ?? '',
    description: tool?.description ?? '',
    method: tool?.method ?? 'GET',
    pathTemplate: tool?.pathTemplate ?? '',
    path: toPairs(tool?.paramMapping?.path),
    query: toPairs(tool?.paramMapping?.query),
    headers: toPairs(tool?.paramMapping?.headers),
    body: toPairs(tool?.paramMapping?.body),
    rawBody: tool?.paramMapping?.rawBody ?? '',
    pick: tool?.responseMapping?.pick ?? '',
    active: tool?.active ?? true,
    schema: tool ? `${JSON.stringify(tool.inputSchema, null, 2)}\n` : DEFAULT_SCHEMA,
  };
}

function bodyOf(d: Draft, schema: unknown): Record<string, unknown> {
  const paramMapping: Record<string, unknown> = {};
  for (const key of ['path', 'query', 'headers', 'body'] as const) {
    const map = fromPairs(d[key]);
    if (Object.keys(map).length) paramMapping[key] = map;
  }
  if (d.rawBody.trim()) paramMapping.rawBody = d.rawBody.trim();
  return {
    name: d.name.trim(),
    description: d.description,
    method: d.method,
    pathTemplate: d.pathTemplate.trim(),
    paramMapping,
    inputSchema: schema,
    ...(d.pick.trim() ? { responseMapping: { pick: d.pick.trim() } } : {}),
    active: d.active,
  };
}

/** `{id}` placeholders of a path template. */
function placeholders(template: string): string[] {
  return [...template.matchAll(/\{([^{}]+)\}/g)].map((m) => m[1]);
}

function FormBody({ serverId, existing }: { serverId: string; existing?: ToolBinding }) {
  const editing = Boolean(existing);
  const [draft, setDraft] = useState<Draft>(() => draftOf(existing));
  const [saveError, setSaveError] = useState<ApiError | null>(null);
  const [check, setCheck] = useState<{ state: 'idle' | 'checking' | 'valid' | 'invalid'; error?: ApiError }>({ state: 'idle' });
  const [busy, setBusy] = useState(false);
  const [, navigate] = useLocation();
  const client = useQueryClient();
  const set = <K extends keyof Draft>(key: K, value: Draft[K]) => setDraft((d) => ({ ...d, [key]: value }));

  const syntax = useMemo(() => jsonSyntaxError(draft.schema), [draft.schema]);

  // The admin API's check of the whole tool, 300 ms after the last change.
  useEffect(() => {
    if (syntax || !draft.name.trim()) {
      return;
    }
    const schema = JSON.parse(draft.schema) as unknown;
    let cancelled = false;
    const timer = setTimeout(() => {
      setCheck({ state: 'checking' });
      api
        .post(`api/tools/${enc(serverId)}/${enc(draft.name.trim())}/validate`, bodyOf(draft, schema))
        .then(() => !cancelled && setCheck({ state: 'valid' }))
        .catch((err: unknown) => !cancelled && setCheck({ state: 'invalid', error: err instanceof ApiError ? err : undefined }));
    }, 300);
    return () => {
      cancelled = true;
      clearTimeout(timer);
    };
  }, [draft, syntax, serverId]);

  const error = saveError ?? (check.state === 'invalid' ? check.error : undefined) ?? null;
  const problem = (field: string) => error?.fieldError(field);
  const missing = placeholders(draft.pathTemplate).filter((p) => !draft.path.some(([k]) => k === p));

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setSaveError(null);
    if (syntax) return;
    const name = draft.name.trim();
    if (!name) {
      setSaveError(new ApiError(422, 'invalid_registration', 'the registration is invalid', [{ field: 'name', message: 'is required' }]));
      return;
    }
    setBusy(true);
    try {
      await api.post(`api/tools/${enc(serverId)}/${enc(name)}`, bodyOf(draft, JSON.parse(draft.schema)));
      await client.invalidateQueries({ queryKey: ['tools', serverId] });
      await client.invalidateQueries({ queryKey: ['tool', serverId, name] });
      navigate(`/servers/${enc(serverId)}`);
    } catch (err) {
      setSaveError(err instanceof ApiError ? err : new ApiError(0, 'unknown', String(err)));
    } finally {
      setBusy(false);
    }
  };

  const schemaProblems = error?.details.filter((d) => d.field === 'inputSchema' || d.field.startsWith('inputSchema.')) ?? [];
  const mappingProblem = (key: string) =>
    error?.details
      .filter((d) => d.field.startsWith(`paramMapping.${key}`))
      .map((d) => `${d.field.replace(`paramMapping.${key}.`, '')}: ${d.message}`)
      .join('; ') || undefined;

  return (
    <form className="form card" onSubmit={submit} noValidate aria-label={editing ? 'Edit tool' : 'New tool'}>
      {saveError && saveError.details.length === 0 && <ErrorMessage error={saveError} />}
      {error && error.details.length > 0 && (
        <div className="banner bad" role="alert" data-testid="tool-problems">
          {saveError ? 'The admin API refused the tool' : 'Not valid yet'}: {error.details.length} problem
          {error.details.length === 1 ? '' : 's'}, shown next to the fields.
        </div>
      )}
      <div className="form-grid">
        <Field label="Tool name" error={problem('name')} hint="What MCP clients call: /mcp/{server}/{tool}.">
          {(p) => <input {...p} name="name" value={draft.name} readOnly={editing} onChange={(e) => set('name', e.target.value)} placeholder="get_forecast" autoComplete="off" />}
        </Field>
        <Field label="Method" error={problem('method')}>
          {(p) => (
            <select {...p} name="method" value={draft.method} onChange={(e) => set('method', e.target.value as HttpMethod)}>
              {METHODS.map((m) => (
                <option key={m}>{m}</option>
              ))}
            </select>
          )}
        </Field>
        <Field
          label="Path template"
          error={problem('pathTemplate')}
          hint={missing.length ? `Map ${missing.map((m) => `{${m}}`).join(', ')} to an argument below.` : 'Appended to the base URL, e.g. /items/{id}.'}
        >
          {(p) => <input {...p} name="pathTemplate" value={draft.pathTemplate} onChange={(e) => set('pathTemplate', e.target.value)} placeholder="/items/{id}" />}
        </Field>
        <Field label="Response pick (JSONPath)" error={problem('responseMapping.pick') ?? problem('responseMapping')} hint="Optional, e.g. $.data[*].name">
          {(p) => <input {...p} name="pick" value={draft.pick} onChange={(e) => set('pick', e.target.value)} placeholder="$.data" />}
        </Field>
      </div>
      <Field label="Description" error={problem('description')}>
        {(p) => <textarea {...p} name="description" rows={2} value={draft.description} onChange={(e) => set('description', e.target.value)} />}
      </Field>
      <div className="mapping-grid">
        <KeyValueEditor label="Path placeholders" keyLabel="Placeholder" valueLabel="Argument" pairs={draft.path} onChange={(v) => set('path', v)} error={mappingProblem('path')} testId="map-path" />
        <KeyValueEditor label="Query parameters" keyLabel="Parameter" valueLabel="Argument" pairs={draft.query} onChange={(v) => set('query', v)} error={mappingProblem('query')} testId="map-query" />
        <KeyValueEditor label="Headers" keyLabel="Header" valueLabel="Argument" pairs={draft.headers} onChange={(v) => set('headers', v)} error={mappingProblem('headers')} testId="map-headers" />
        <KeyValueEditor label="JSON body keys" keyLabel="Key" valueLabel="Argument" pairs={draft.body} onChange={(v) => set('body', v)} error={mappingProblem('body')} testId="map-body" />
      </div>
      <Field label="Raw body argument" error={problem('paramMapping.rawBody')} hint="Optional: one argument sent as the whole body.">
        {(p) => <input {...p} name="rawBody" value={draft.rawBody} onChange={(e) => set('rawBody', e.target.value)} />}
      </Field>
      <div className={`field${syntax || schemaProblems.length ? ' invalid' : ''}`}>
        <label htmlFor="input-schema">Input JSON Schema</label>
        <JsonEditor id="input-schema" label="Input JSON Schema" value={draft.schema} onChange={(t) => set('schema', t)} testId="schema-editor" />
        <div className="schema-status" data-testid="schema-status" aria-live="polite">
          {syntax ? (
            <small className="error-text" role="alert">
              JSON syntax error: {syntax}
            </small>
          ) : schemaProblems.length ? (
            schemaProblems.map((p) => (
              <small className="error-text" role="alert" key={p.message}>
                Schema error: {p.message}
              </small>
            ))
          ) : check.state === 'valid' ? (
            <small className="ok-text">Valid JSON Schema; the tool passes the admin API's checks.</small>
          ) : check.state === 'checking' ? (
            <small className="muted">Checking…</small>
          ) : (
            <small className="muted">The schema is checked as you type.</small>
          )}
        </div>
      </div>
      <label className="check">
        <input type="checkbox" name="active" checked={draft.active} onChange={(e) => set('active', e.target.checked)} /> Active
      </label>
      <div className="actions">
        <Link href={`/servers/${enc(serverId)}`} className="button">
          Cancel
        </Link>
        <button type="submit" className="primary" disabled={busy || Boolean(syntax)}>
          {editing ? 'Save tool' : 'Create tool'}
        </button>
      </div>
    </form>
  );
}

export function ToolForm({ serverId, toolName }: { serverId: string; toolName?: string }) {
  const tool = useTool(serverId, toolName ?? '', Boolean(toolName));
  return (
    <section className="page narrow">
      <p className="crumbs">
        <Link href={`/servers/${enc(serverId)}`}>← {serverId}</Link>
      </p>
      <h1>{toolName ? `Edit ${toolName}` : 'New tool'}</h1>
      {!toolName && <FormBody serverId={serverId} />}
      {toolName && tool.error ? <ErrorMessage error={tool.error} /> : null}
      {toolName && (tool.data ? <FormBody serverId={serverId} existing={tool.data} /> : !tool.error && <Loading what="the tool" />)}
    </section>
  );
}
