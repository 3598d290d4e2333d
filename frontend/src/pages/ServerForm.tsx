// Create or edit a server. The admin API is the judge: its 422 lists every problem by
// field (`baseUrl`, `auth.key`, …) and each is shown next to its field. The stored
// secret is never sent to the page: left empty on edit, the mask is posted back and
// the admin API keeps the stored value.

import { useState, type FormEvent } from 'react';
import { useQueryClient } from '@tanstack/react-query';
import { Link, useLocation } from 'wouter';
import { api, ApiError, enc } from '../lib/api';
import { useServer } from '../lib/queries';
import { unmarkDeleted } from '../lib/events';
import { Field } from '../components/Field';
import { fromPairs, KeyValueEditor, toPairs, type Pairs } from '../components/KeyValue';
import { ErrorMessage, Loading } from '../components/QueryState';
import type { AuthType, ServerConfig, ServerView } from '../lib/types';

const MASK = '********';

interface Draft {
  id: string;
  name: string;
  baseUrl: string;
  authType: AuthType;
  authKey: string;
  authValue: string;
  hasSecret: boolean;
  headers: Pairs;
  timeoutMs: string;
  replicas: string;
  active: boolean;
}

function draftOf(server?: ServerView): Draft {
  return {
    id: server?.id ?? '',
    name: server?.name ?? '',
    baseUrl: server?.baseUrl ?? '',
    authType: server?.auth?.type ?? 'none',
    authKey: server?.auth?.key ?? '',
    authValue: '',
    hasSecret: Boolean(server?.auth?.value),
    headers: toPairs(server?.defaultHeaders),
    timeoutMs: server?.timeoutMs !== undefined ? String(server.timeoutMs) : '',
    replicas: server?.replicas !== undefined ? String(server.replicas) : '',
    active: server?.active ?? true,
  };
}

function bodyOf(d: Draft): Partial<ServerConfig> & Record<string, unknown> {
  const auth: Record<string, string> = { type: d.authType };
  if (d.authType === 'header' || d.authType === 'query') auth.key = d.authKey;
  if (d.authType !== 'none') {
    if (d.authValue) auth.value = d.authValue;
    else if (d.hasSecret) auth.value = MASK;
  }
  const number = (text: string) => (text.trim() === '' ? undefined : Number(text.trim()));
  return {
    name: d.name.trim() || d.id,
    baseUrl: d.baseUrl.trim(),
    auth: auth as unknown as ServerConfig['auth'],
    defaultHeaders: fromPairs(d.headers),
    active: d.active,
    timeoutMs: number(d.timeoutMs),
    replicas: number(d.replicas),
  };
}

function FormBody({ existing }: { existing?: ServerView }) {
  const editing = Boolean(existing);
  const [draft, setDraft] = useState<Draft>(() => draftOf(existing));
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const [, navigate] = useLocation();
  const client = useQueryClient();
  const set = <K extends keyof Draft>(key: K, value: Draft[K]) => setDraft((d) => ({ ...d, [key]: value }));
  const problem = (field: string) => error?.fieldError(field);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    const id = draft.id.trim();
    if (!id) {
      setError(new ApiError(422, 'invalid_registration', 'the registration is invalid', [{ field: 'id', message: 'is required' }]));
      return;
    }
    setBusy(true);
    try {
      await api.post(`api/servers/${enc(id)}`, bodyOf({ ...draft, id }));
      unmarkDeleted(id);
      await client.invalidateQueries({ queryKey: ['servers'] });
      await client.invalidateQueries({ queryKey: ['server', id] });
      navigate(`/servers/${enc(id)}`);
    } catch (err) {
      setError(err instanceof ApiError ? err : new ApiError(0, 'unknown', String(err)));
    } finally {
      setBusy(false);
    }
  };

  const secretLabel = draft.authType === 'bearer' ? 'Bearer token' : draft.authType === 'header' ? 'Header value' : 'Query value';
  const others = error?.details.filter(
    (p) => !['id', 'name', 'baseUrl', 'auth', 'defaultHeaders', 'timeoutMs', 'replicas', 'active'].some((f) => p.field === f || p.field.startsWith(`${f}.`)),
  );

  return (
    <form className="form card" onSubmit={submit} noValidate aria-label={editing ? 'Edit server' : 'New server'}>
      {error && error.details.length === 0 && <ErrorMessage error={error} />}
      {error && error.details.length > 0 && (
        <div className="banner bad" role="alert">
          The admin API refused the server: {error.details.length} problem{error.details.length === 1 ? '' : 's'}, shown
          next to {error.details.length === 1 ? 'its field' : 'their fields'}.
          {others && others.length > 0 && (
            <ul>
              {others.map((p) => (
                <li key={p.field + p.message}>
                  <code>{p.field || '(body)'}</code> {p.message}
                </li>
              ))}
            </ul>
          )}
        </div>
      )}
      <div className="form-grid">
        <Field label="Server id" error={problem('id')} hint="Letters, digits, _ and -; part of every MCP URL.">
          {(p) => (
            <input {...p} name="id" value={draft.id} readOnly={editing} onChange={(e) => set('id', e.target.value)} placeholder="weather_api" autoComplete="off" />
          )}
        </Field>
        <Field label="Display name" error={problem('name')} hint="Defaults to the id.">
          {(p) => <input {...p} name="name" value={draft.name} onChange={(e) => set('name', e.target.value)} />}
        </Field>
        <Field label="Base URL" error={problem('baseUrl')} hint="Every tool's path is appended to it.">
          {(p) => (
            <input {...p} name="baseUrl" type="url" value={draft.baseUrl} onChange={(e) => set('baseUrl', e.target.value)} placeholder="https://api.example.com/v1" />
          )}
        </Field>
        <Field label="Auth" error={problem('auth.type') ?? (error?.details.find((d) => d.field === 'auth')?.message)}>
          {(p) => (
            <select {...p} name="authType" value={draft.authType} onChange={(e) => set('authType', e.target.value as AuthType)}>
              <option value="none">none</option>
              <option value="bearer">bearer token</option>
              <option value="header">API key in a header</option>
              <option value="query">API key in the query</option>
            </select>
          )}
        </Field>
        {(draft.authType === 'header' || draft.authType === 'query') && (
          <Field label={draft.authType === 'header' ? 'Header name' : 'Query parameter'} error={problem('auth.key')}>
            {(p) => <input {...p} name="authKey" value={draft.authKey} onChange={(e) => set('authKey', e.target.value)} placeholder={draft.authType === 'header' ? 'X-Api-Key' : 'api_key'} />}
          </Field>
        )}
        {draft.authType !== 'none' && (
          <Field
            label={secretLabel}
            error={problem('auth.value')}
            hint={draft.hasSecret ? 'A secret is stored; leave empty to keep it.' : 'Stored in the registry, never shown again.'}
          >
            {(p) => (
              <input
                {...p}
                name="authValue"
                type="password"
                autoComplete="new-password"
                value={draft.authValue}
                placeholder={draft.hasSecret ? '•••••••• (unchanged)' : ''}
                onChange={(e) => set('authValue', e.target.value)}
              />
            )}
          </Field>
        )}
        <Field label="Timeout (ms)" error={problem('timeoutMs')} hint="Total time of one REST call; default 30000.">
          {(p) => <input {...p} name="timeoutMs" inputMode="numeric" value={draft.timeoutMs} onChange={(e) => set('timeoutMs', e.target.value)} placeholder="30000" />}
        </Field>
        <Field label="Replicas" error={problem('replicas')} hint="Worker processes; default 1.">
          {(p) => <input {...p} name="replicas" inputMode="numeric" value={draft.replicas} onChange={(e) => set('replicas', e.target.value)} placeholder="1" />}
        </Field>
      </div>
      <KeyValueEditor
        label="Default headers"
        keyLabel="Header"
        valueLabel="Value"
        pairs={draft.headers}
        onChange={(h) => set('headers', h)}
        error={error?.details.filter((d) => d.field.startsWith('defaultHeaders')).map((d) => `${d.field}: ${d.message}`).join('; ') || undefined}
      />
      <label className="check">
        <input type="checkbox" name="active" checked={draft.active} onChange={(e) => set('active', e.target.checked)} /> Active (workers
        run, calls are accepted)
      </label>
      <div className="actions">
        <Link href={editing ? `/servers/${enc(draft.id)}` : '/'} className="button">
          Cancel
        </Link>
        <button type="submit" className="primary" disabled={busy}>
          {editing ? 'Save server' : 'Create server'}
        </button>
      </div>
    </form>
  );
}

export function ServerForm({ id }: { id?: string }) {
  const server = useServer(id ?? '');
  if (!id)
    return (
      <section className="page narrow">
        <p className="crumbs">
          <Link href="/">← Servers</Link>
        </p>
        <h1>New server</h1>
        <FormBody />
      </section>
    );
  return (
    <section className="page narrow">
      <p className="crumbs">
        <Link href={`/servers/${enc(id)}`}>← {id}</Link>
      </p>
      <h1>Edit {id}</h1>
      {server.error ? <ErrorMessage error={server.error} /> : null}
      {server.data ? <FormBody existing={server.data} /> : !server.error && <Loading what="the server" />}
    </section>
  );
}
