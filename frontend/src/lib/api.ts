// Owns every HTTP call of the console: URLs relative to where it is served (the
// `<base href>` the admin API writes names /…/dashboard/, the hub's root is one level
// up), the admin token, and the admin API's error contract turned into `ApiError`.

import type { Problem } from './types';

const TOKEN_KEY = 'mcp-hub.admin-token';

/** The hub's root: `api/…` and `mcp/…` are resolved against it. */
export function hubRoot(): URL {
  return new URL('../', document.baseURI);
}

export function hubUrl(path: string): string {
  return new URL(path.replace(/^\//, ''), hubRoot()).toString();
}

export function getToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token: string | null): void {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
  window.dispatchEvent(new Event('mcp-hub:token'));
}

export function authHeaders(): Record<string, string> {
  const token = getToken();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** An answer that was not 2xx, or no answer at all (`status` 0). */
export class ApiError extends Error {
  status: number;
  code: string;
  details: Problem[];
  requestId?: string;

  constructor(status: number, code: string, message: string, details: Problem[] = [], requestId?: string) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
    this.requestId = requestId;
  }

  /** The problem of one form field (`auth.value`, `inputSchema`, …), if any. */
  fieldError(field: string): string | undefined {
    return this.details.find((p) => p.field === field || p.field.startsWith(`${field}.`))?.message;
  }
}

export function isUnauthorized(err: unknown): boolean {
  return err instanceof ApiError && err.status === 401;
}

/** Fired on every 401 so the token prompt opens wherever the call came from. */
function reportUnauthorized() {
  window.dispatchEvent(new Event('mcp-hub:unauthorized'));
}

export async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  let response: Response;
  try {
    response = await fetch(hubUrl(path), {
      method,
      headers: {
        Accept: 'application/json',
        ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
        ...authHeaders(),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, 'unreachable', 'The admin API cannot be reached (is the hub running?).');
  }
  const text = await response.text();
  let json: unknown = undefined;
  if (text) {
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
  }
  if (!response.ok) {
    if (response.status === 401) reportUnauthorized();
    const error = (json as { error?: { code?: string; message?: string; details?: Problem[]; request_id?: string } })
      ?.error;
    throw new ApiError(
      response.status,
      error?.code ?? `http_${response.status}`,
      error?.message ?? (response.status >= 502 ? 'The admin API is unavailable.' : `HTTP ${response.status}`),
      Array.isArray(error?.details) ? error.details : [],
      error?.request_id ?? response.headers.get('x-request-id') ?? undefined,
    );
  }
  return json as T;
}

export const api = {
  get: <T>(path: string) => request<T>('GET', path),
  post: <T>(path: string, body?: unknown) => request<T>('POST', path, body ?? {}),
  delete: <T>(path: string) => request<T>('DELETE', path),
};

export function enc(segment: string): string {
  return encodeURIComponent(segment);
}
