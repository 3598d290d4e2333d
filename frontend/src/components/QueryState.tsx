// What a page shows while its data loads or when it cannot: an unreachable admin API,
// a missing token and other errors each get their own message.

import { ApiError } from '../lib/api';

export function ErrorMessage({ error }: { error: unknown }) {
  if (error instanceof ApiError) {
    if (error.status === 0)
      return (
        <div className="banner bad" role="alert">
          <strong>The admin API cannot be reached.</strong> Is the hub running? The page retries on its own.
        </div>
      );
    if (error.status === 401)
      return (
        <div className="banner bad" role="alert">
          <strong>Unauthorized (401).</strong> This hub requires its admin token (<code>MCP_ADMIN_TOKEN</code>).
        </div>
      );
    if (error.status >= 500)
      return (
        <div className="banner bad" role="alert">
          <strong>The admin API is unavailable ({error.status}).</strong> {error.message}
          {error.requestId && <span className="muted"> request id {error.requestId}</span>}
        </div>
      );
    return (
      <div className="banner bad" role="alert">
        {error.message}
        {error.requestId && <span className="muted"> (request id {error.requestId})</span>}
      </div>
    );
  }
  return (
    <div className="banner bad" role="alert">
      {String(error)}
    </div>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p className="muted" aria-busy="true">
      Loading {what}…
    </p>
  );
}
