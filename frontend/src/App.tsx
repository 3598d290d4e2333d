// The console's shell: navigation, the admin-token prompt, the live event stream and
// the routes (wouter, under the path the console is served at, e.g. /dashboard).

import { lazy, Suspense, useEffect, useMemo, useState } from 'react';
import { useQueryClient } from '@tanstack/react-query';
import { Link, Route, Router, Switch, useLocation } from 'wouter';
import { EventStream, useLiveState } from './lib/events';
import { getToken } from './lib/api';
import { TokenDialog } from './components/TokenDialog';
import { Overview } from './pages/Overview';
import { ServersPage } from './pages/Servers';
import { ServerDetail } from './pages/ServerDetail';
import { ServerForm } from './pages/ServerForm';
import { ImportExport } from './pages/ImportExport';

// The pages with the code editor and the schema form load on first use: the list,
// detail and overview pages stay small.
const ToolForm = lazy(() => import('./pages/ToolForm').then((m) => ({ default: m.ToolForm })));
const OpenApiImport = lazy(() => import('./pages/OpenApiImport').then((m) => ({ default: m.OpenApiImport })));
const Audit = lazy(() => import('./pages/Audit').then((m) => ({ default: m.Audit })));
const TestConsole = lazy(() => import('./pages/TestConsole').then((m) => ({ default: m.TestConsole })));

/** `/dashboard` (or `/hub/dashboard` behind a prefix): the path of `<base href>`. */
function basePath(): string {
  return new URL(document.baseURI).pathname.replace(/\/$/, '');
}

declare global {
  interface Window {
    /** Read by the browser suite: when the last worker event reached the page. */
    __mcpHubEvents?: EventStream;
  }
}

function Nav({ live }: { live: string }) {
  const [location] = useLocation();
  const item = (href: string, label: string, match: (l: string) => boolean) => (
    <Link href={href} className={match(location) ? 'active' : ''} aria-current={match(location) ? 'page' : undefined}>
      {label}
    </Link>
  );
  return (
    <header className="topbar">
      <Link href="/" className="brand" aria-label="MCP Hub, servers">
        <svg viewBox="0 0 32 32" width="22" height="22" aria-hidden="true">
          <rect width="32" height="32" rx="7" fill="currentColor" />
          <path d="M8 22V10l8 7 8-7v12" fill="none" stroke="#fff" strokeWidth="3" strokeLinecap="round" strokeLinejoin="round" />
        </svg>
        <span>MCP Hub</span>
      </Link>
      <nav aria-label="Main">
        {item('/', 'Servers', (l) => l === '/' || l.startsWith('/servers'))}
        {item('/overview', 'Overview', (l) => l === '/overview')}
        {item('/console', 'Test console', (l) => l.startsWith('/console'))}
        {item('/registry', 'Import / export', (l) => l === '/registry')}
        {item('/openapi', 'OpenAPI import', (l) => l === '/openapi')}
        {item('/audit', 'Audit', (l) => l === '/audit')}
      </nav>
      <span className={`live live-${live}`} role="status" title="Event stream from the admin API" data-testid="live">
        <span className="dot" aria-hidden="true" />
        {live === 'live' ? 'live' : live === 'unauthorized' ? 'token needed' : live}
      </span>
    </header>
  );
}

export function App() {
  const client = useQueryClient();
  const stream = useMemo(() => new EventStream(client), [client]);
  const live = useLiveState(stream);
  const [askToken, setAskToken] = useState(false);
  const [tokenVersion, setTokenVersion] = useState(0);

  useEffect(() => {
    window.__mcpHubEvents = stream;
    stream.start();
    return () => stream.stop();
  }, [stream, tokenVersion]);

  useEffect(() => {
    const unauthorized = () => setAskToken(true);
    const changed = () => {
      setTokenVersion((v) => v + 1);
      void client.invalidateQueries();
    };
    window.addEventListener('mcp-hub:unauthorized', unauthorized);
    window.addEventListener('mcp-hub:token', changed);
    return () => {
      window.removeEventListener('mcp-hub:unauthorized', unauthorized);
      window.removeEventListener('mcp-hub:token', changed);
    };
  }, [client]);

  return (
    <Router base={basePath()}>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <Nav live={live} />
      <main id="main" tabIndex={-1}>
        <Suspense fallback={<p className="muted">Loading…</p>}>
          <Switch>
            <Route path="/" component={ServersPage} />
            <Route path="/overview" component={Overview} />
            <Route path="/servers/new">{() => <ServerForm />}</Route>
            <Route path="/servers/:id/edit">{(p) => <ServerForm id={p.id} />}</Route>
            <Route path="/servers/:id/tools/new">{(p) => <ToolForm serverId={p.id} />}</Route>
            <Route path="/servers/:id/tools/:tool/edit">{(p) => <ToolForm serverId={p.id} toolName={p.tool} />}</Route>
            <Route path="/servers/:id">{(p) => <ServerDetail id={p.id} />}</Route>
            <Route path="/console" component={TestConsole} />
            <Route path="/registry" component={ImportExport} />
            <Route path="/openapi" component={OpenApiImport} />
            <Route path="/audit" component={Audit} />
            <Route>
              <section className="page">
                <h1>Not found</h1>
                <p>
                  This page does not exist. <Link href="/">Back to the servers</Link>.
                </p>
              </section>
            </Route>
          </Switch>
        </Suspense>
      </main>
      {askToken && (
        <TokenDialog
          hadToken={getToken() !== null}
          onClose={() => setAskToken(false)}
        />
      )}
    </Router>
  );
}
