// Create or edit a server. The admin API is the judge: its 422 lists every problem by
// field (`baseUrl`, `auth.key`, …) and each is shown next to its field. The stored
// secret is never sent to the page: left empty on edit, the mask is posted back and
// the admin API keeps the stored value; so does a credential default header's mask
// (the hint under it says so). What the form does not edit (retry, audit, fields
// this version does not know) is posted back as it was.

import { useState, type FormEvent } from 'react';
import { useQueryClient } from '@tanstack/react-query';
import { Link, useLocation } from 'wouter';
import { api, ApiError, enc } from '../lib/api';
import { useServer } from '../lib/queries';
import { unmarkDeleted } from '../lib/events';
import { Field } from '../components/Field';
import { fromPairs, KeyValueEditor, toPairs, type Pairs } from '../components/KeyValue';
import { ErrorMessage, Loading } from '../components/QueryState';
import { isCredentialHeader, MASK } from '../lib/secrets';
import type { AuthType, CircuitBreakerConfig, ServerConfig, ServerView } from '../lib/types';

/** The breaker's fields as the registration spells them, in the form's order. */
const BREAKER_FIELDS = ['failureThreshold', 'coolDownMs', 'errorRatePercent', 'windowMs', 'minCalls'] as const;
type BreakerField = (typeof BREAKER_FIELDS)[number];

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
  /** Whether the registration has a `circuitBreaker` (an empty one means the defaults). */
  breaker: boolean;
  /** Each breaker field as typed; empty: absent (the API's default). */
  breakerFields: Record<BreakerField, string>;
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
    breaker: Boolean(server?.circuitBreaker),
    breakerFields: Object.fromEntries(
      BREAKER_FIELDS.map((f) => [f, server?.circuitBreaker?.[f] !== undefined ? String(server.circuitBreaker[f]) : '']),
    ) as Record<BreakerField, string>,
  };
}

/** A typed number as JSON: a number when it reads as one, else the text as typed, so
 *  the admin API judges it and its message is shown (`NaN` would be posted as null). */
function numberOf(text: string): number | string | undefined {
  const t = text.trim();
  if (t === '') return undefined;
  return /^-?\d+(\.\d+)?$/.test(t) ? Number(t) : t;
}

function breakerOf(d: Draft): CircuitBreakerConfig | undefined {
  if (!d.breaker) return undefined;
  const out: Record<string, number | string> = {};
  for (const f of BREAKER_FIELDS) {
    const value = numberOf(d.breakerFields[f]);
    if (value !== undefined) out[f] = value;
  }
  return out as CircuitBreakerConfig;
}

function bodyOf(d: Draft, existing?: ServerView): Partial<ServerConfig> & Record<string, unknown> {
  const auth: Record<string, string> = { type: d.authType };
  if (d.authType === 'header' || d.authType === 'query') auth.key = d.authKey;
  if (d.authType !== 'none') {
    if (d.authValue) auth.value = d.authValue;
    else if (d.hasSecret) auth.value = MASK;
  }
  // eslint-disable-next-line @typescript-eslint/no-unused-vars
  const { id, toolCount, ...kept } = existing ?? ({} as Partial<ServerView>);
  return {
    ...kept,
    name: d.name.trim() || d.id,
    baseUrl: d.baseUrl.trim(),
    auth: auth as unknown as ServerConfig['auth'],
    defaultHeaders: fromPairs(d.headers),
    active: d.active,
    timeoutMs: numberOf(d.timeoutMs) as number | undefined,
    replicas: numberOf(d.replicas) as number | undefined,
    circuitBreaker: breakerOf(d),
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
      await api.post(`api/servers/${enc(id)}`, bodyOf({ ...draft, id }, existing));
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
  const breakerShown = draft.breaker ? BREAKER_FIELDS.map((f) => `circuitBreaker.${f}`) : [];
  const others = error?.details.filter(
    (p) =>
      !['id', 'name', 'baseUrl', 'auth', 'defaultHeaders', 'timeoutMs', 'replicas', 'active'].some((f) => p.field === f || p.field.startsWith(`${f}.`)) &&
      !breakerShown.includes(p.field),
  );
  const setBreakerField = (f: BreakerField, value: string) => set('breakerFields', { ...draft.breakerFields, [f]: value });
  const headerHint = (key: string, value: string) => {
    if (!isCredentialHeader(key)) return undefined;
    return value === MASK
      ? `${MASK} keeps the stored value; type a new one to replace it.`
      : 'A credential: stored, and shown as ******** from now on.';
  };

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
        valueHint={headerHint}
        error={error?.details.filter((d) => d.field.startsWith('defaultHeaders')).map((d) => `${d.field}: ${d.message}`).join('; ') || undefined}
      />
      <fieldset className="breaker" data-testid="breaker-fields">
        <legend>Circuit breaker</legend>
        <label className="check">
          <input type="checkbox" name="breaker" checked={draft.breaker} onChange={(e) => set('breaker', e.target.checked)} /> Guard this REST API
          with a circuit breaker (empty fields take the defaults)
        </label>
        {draft.breaker && (
          <div className="form-grid">
            <Field label="Failures in a row" error={problem('circuitBreaker.failureThreshold')} hint="Consecutive failed attempts that open it; default 5.">
              {(p) => (
                <input {...p} name="failureThreshold" inputMode="numeric" value={draft.breakerFields.failureThreshold} onChange={(e) => setBreakerField('failureThreshold', e.target.value)} placeholder="5" />
              )}
            </Field>
            <Field label="Cool-down (ms)" error={problem('circuitBreaker.coolDownMs')} hint="Time open before one probe call; default 30000.">
              {(p) => (
                <input {...p} name="coolDownMs" inputMode="numeric" value={draft.breakerFields.coolDownMs} onChange={(e) => setBreakerField('coolDownMs', e.target.value)} placeholder="30000" />
              )}
            </Field>
            <Field
              label="Error rate (%)"
              error={problem('circuitBreaker.errorRatePercent')}
              hint="1-100: also open when this share of the window's attempts failed; empty: off."
            >
              {(p) => (
                <input {...p} name="errorRatePercent" inputMode="numeric" value={draft.breakerFields.errorRatePercent} onChange={(e) => setBreakerField('errorRatePercent', e.target.value)} placeholder="off" />
              )}
            </Field>
            <Field label="Window (ms)" error={problem('circuitBreaker.windowMs')} hint="The error rate's window, 100-600000; default 10000 (only with an error rate).">
              {(p) => (
                <input {...p} name="windowMs" inputMode="numeric" value={draft.breakerFields.windowMs} onChange={(e) => setBreakerField('windowMs', e.target.value)} placeholder="10000" />
              )}
            </Field>
            <Field label="Minimum calls" error={problem('circuitBreaker.minCalls')} hint="Attempts the window must hold first, 1-100000; default 20 (only with an error rate).">
              {(p) => (
                <input {...p} name="minCalls" inputMode="numeric" value={draft.breakerFields.minCalls} onChange={(e) => setBreakerField('minCalls', e.target.value)} placeholder="20" />
              )}
            </Field>
          </div>
        )}
      </fieldset>
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
