// The dashboard's browser suite: a real headless Chromium (Debian's, through
// playwright-core: no browser download) against a real hub (hub.ts). It drives the
// console as an operator would and ends with `dashboard: N passed, N failed`.
//
//   npx tsx e2e/run.ts [--bin-dir DIR] [--kills N]
//
// Writes under test-output/: screenshots of each main page, results.json (every
// check, its time) and kill-to-visible.json (SIGKILL of a worker -> the page shows it
// not running -> running again, measured in the page).

import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { mkdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startHub, type Hub } from './hub.ts';

const here = dirname(fileURLToPath(import.meta.url));
const frontend = resolve(here, '..');
const out = join(frontend, 'test-output');
const shots = join(out, 'screenshots');

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}

const targetDir = process.env.CARGO_TARGET_DIR ?? join(process.env.HOME ?? '/root', '.cache/mcp-hub/target');
const binDir = resolve(arg('--bin-dir', join(targetDir, 'debug')));
const kills = Number(arg('--kills', '3'));
// How long a worker runs before the next kill. The supervisor forgets earlier crashes
// (its back-off starts again at the minimum) once a worker has run 10 s and then passed
// a health probe (2 s apart): scripts/dashboard-bench.sh waits 12.5 s so every kill is
// measured from the same state; make test kills in a row, which exercises the back-off.
const settleMs = Number(arg('--settle-ms', '1000'));
const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

const SECRET = 'e2e-secret-value-0123456789';
const TOKEN = 'e2e-admin-token-0123456789';
const SERVER = 'e2e_fruits';
const TOOL = 'get_fruit_by_id';

interface Result {
  name: string;
  ok: boolean;
  ms: number;
  error?: string;
}

const results: Result[] = [];
const consoleErrors: string[] = [];
const foreignRequests: string[] = [];
const timings: { kill: number; page: string; notRunningMs: number; runningAgainMs: number; restartsBefore: number; restartsAfter: number }[] = [];

function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(message);
}

async function check(name: string, body: () => Promise<void>) {
  const started = Date.now();
  try {
    await body();
    results.push({ name, ok: true, ms: Date.now() - started });
    console.log(`ok    ${name} (${Date.now() - started} ms)`);
  } catch (err) {
    const message = err instanceof Error ? (err.stack ?? err.message) : String(err);
    results.push({ name, ok: false, ms: Date.now() - started, error: message });
    console.log(`FAIL  ${name}\n      ${message.split('\n').join('\n      ')}`);
  }
}

async function shot(page: Page, name: string) {
  // From the top: a full-page capture of a scrolled page draws the sticky bar mid-page.
  await page.evaluate('window.scrollTo(0, 0)');
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

async function noSecret(page: Page, where: string) {
  const html = await page.content();
  assert(!html.includes(SECRET), `the secret appears in the page (${where})`);
}

async function api<T>(hub: Hub, path: string): Promise<T> {
  const response = await fetch(`${hub.admin}${path}`);
  return (await response.json()) as T;
}

interface Worker {
  replicaIdx: number;
  status: string;
  pid?: number;
  restarts: number;
  startedAt?: number;
}

async function workers(hub: Hub, id: string): Promise<Worker[]> {
  return (await api<{ workers: Worker[] }>(hub, `/api/servers/${id}/runtime`)).workers;
}

async function waitUntil<T>(what: string, ms: number, probe: () => Promise<T | undefined | null | false>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Records in the page (page clock = this machine's clock) when `selector`'s
 *  `data-status` first leaves `running`, then when it is `running` again with a
 *  restart count above `before`. */
async function watchRecovery(page: Page, statusSelector: string, restartsSelector: string, before: number) {
  // A string, not a function: tsx names functions with a helper the page lacks.
  await page.evaluate(`(() => {
    const statusSelector = ${JSON.stringify(statusSelector)};
    const restartsSelector = ${JSON.stringify(restartsSelector)};
    const before = ${before};
    const state = (window.__recovery = {});
    const look = () => {
      const status = document.querySelector(statusSelector)?.getAttribute('data-status');
      const restarts = Number(document.querySelector(restartsSelector)?.textContent ?? '0');
      const now = Date.now();
      if (state.down === undefined && status && status !== 'running') state.down = now;
      if (state.down !== undefined && state.up === undefined && status === 'running' && restarts > before) state.up = now;
    };
    new MutationObserver(look).observe(document.body, { subtree: true, childList: true, attributes: true, characterData: true });
    look();
  })()`);
}

async function recovery(page: Page): Promise<{ down: number; up: number }> {
  await page.waitForFunction(() => {
    const r = (window as unknown as { __recovery?: { down?: number; up?: number } }).__recovery;
    return r?.down !== undefined && r?.up !== undefined;
  }, undefined, { timeout: 40_000, polling: 50 });
  return page.evaluate(() => (window as unknown as { __recovery: { down: number; up: number } }).__recovery);
}

/** Replaces the text of the CodeMirror editor in `container` (no key events, so the
 *  editor's bracket closing does not add to what is typed). */
async function setEditor(page: Page, container: string, text: string) {
  await page.click(`${container} .cm-content`);
  await page.keyboard.press('ControlOrMeta+a');
  await page.keyboard.press('Delete');
  await page.keyboard.insertText(text);
}

async function main() {
  rmSync(out, { recursive: true, force: true });
  mkdirSync(shots, { recursive: true });
  const dist = join(frontend, 'dist');
  assert(existsSync(join(dist, 'index.html')), `${dist} holds no build: run scripts/build-dashboard.sh`);
  for (const b of ['mcp-admin', 'mcp-gateway', 'mcp-supervisor', 'mcp-worker', 'mcp-mock-api'])
    assert(existsSync(join(binDir, b)), `${join(binDir, b)} is missing: build the workspace first`);

  const hub = await startHub({ binDir, distDir: dist, logDir: join(out, 'logs') });
  let browser: Browser | undefined;
  try {
    browser = await chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, acceptDownloads: true });
    const page = await context.newPage();
    const origin = new URL(hub.gateway).origin;
    const watch = (p: Page) => {
      p.on('console', (m) => {
        if (m.type() !== 'error') return;
        // Chromium logs every non-2xx fetch; the suite provokes 400 (invalid
        // arguments) and 422 (invalid registration) on purpose. Anything else counts.
        if (/^Failed to load resource: the server responded with a status of (400|422) /.test(m.text())) return;
        consoleErrors.push(`${p.url()}: ${m.text()}`);
      });
      p.on('pageerror', (e) => consoleErrors.push(`${p.url()}: ${e.message}`));
      p.on('request', (r) => {
        const u = new URL(r.url());
        if (!['data:', 'blob:'].includes(u.protocol) && u.origin !== origin && !u.origin.startsWith('http://127.0.0.1:')) foreignRequests.push(r.url());
      });
    };
    watch(page);
    const dashboard = `${hub.gateway}/dashboard/`;

    await check('the gateway serves the console at / and /dashboard', async () => {
      await page.goto(hub.gateway + '/');
      await page.waitForURL(/\/dashboard\/$/);
      await page.getByRole('heading', { name: 'Servers' }).waitFor();
    });

    await check('an empty registry has a clear message', async () => {
      await page.getByTestId('empty').getByText('No server is registered yet').waitFor();
      await shot(page, 'servers-empty');
    });

    await check('the server form shows the admin API\'s problems next to their fields', async () => {
      await page.getByRole('link', { name: '+ New server' }).click();
      await page.getByLabel('Server id').fill(SERVER);
      await page.getByLabel('Base URL').fill('ftp://nowhere');
      await page.getByLabel('Auth').selectOption('header');
      await page.getByRole('button', { name: 'Create server' }).click();
      const baseUrl = page.locator('.field.invalid', { has: page.getByLabel('Base URL') });
      await baseUrl.getByText('must be an http or https URL').waitFor();
      await page.locator('.field.invalid', { has: page.getByLabel('Header name') }).getByText('is required').waitFor();
      await shot(page, 'server-form-errors');
    });

    await check('a server created through the form gets a running worker', async () => {
      await page.getByLabel('Base URL').fill(`${hub.mock}/api`);
      await page.getByLabel('Auth').selectOption('bearer');
      await page.getByLabel('Bearer token').fill(SECRET);
      await page.getByLabel('Timeout (ms)').fill('10000');
      await page.getByRole('button', { name: '+ Add' }).click();
      await page.getByLabel('Default headers: Header 1').fill('Accept');
      await page.getByLabel('Default headers: Value 1').fill('application/json');
      await page.getByRole('button', { name: 'Create server' }).click();
      await page.waitForURL(new RegExp(`/dashboard/servers/${SERVER}$`));
      await page.locator('[data-testid=worker][data-status=running]').waitFor({ timeout: 15_000 });
      await noSecret(page, 'server detail');
      const settings = await page.getByTestId('settings').textContent();
      assert(settings?.includes('bearer') && settings.includes('••••••••'), `the secret is not shown masked: ${settings}`);
    });

    await check('the tool editor shows JSON syntax and schema errors before saving', async () => {
      await page.getByRole('link', { name: '+ New tool' }).click();
      await page.getByLabel('Tool name').fill(TOOL);
      await page.getByLabel('Description').fill('Get one fruit by its id.');
      await page.getByLabel('Path template').fill('/fruits/{id}');
      await page.getByTestId('map-path').getByRole('button', { name: '+ Add' }).click();
      await page.getByLabel('Path placeholders: Placeholder 1').fill('id');
      await page.getByLabel('Path placeholders: Argument 1').fill('id');
      await setEditor(page, '[data-testid=schema-editor]', '{"type": "object", "properties": {"id": {"type": "integer"}');
      await page.getByTestId('schema-status').getByText('JSON syntax error').waitFor();
      assert(await page.getByRole('button', { name: 'Create tool' }).isDisabled(), 'Save is enabled with a syntax error');
      await page.locator('.cm-lint-marker-error, .cm-lintRange-error').first().waitFor();
      await setEditor(page, '[data-testid=schema-editor]', '{"type": "object", "properties": {"id": {"type": 12}}}');
      await page.getByTestId('schema-status').getByText('Schema error').waitFor();
      await shot(page, 'tool-form-schema-error');
      await setEditor(
        page,
        '[data-testid=schema-editor]',
        JSON.stringify({ type: 'object', properties: { id: { type: 'integer', minimum: 1, description: 'Fruit id' } }, required: ['id'], additionalProperties: false }, null, 2),
      );
      await page.getByTestId('schema-status').getByText('Valid JSON Schema').waitFor();
      await shot(page, 'tool-form');
      await page.getByRole('button', { name: 'Create tool' }).click();
      await page.waitForURL(new RegExp(`/dashboard/servers/${SERVER}$`));
      await page.locator(`[data-tool=${TOOL}]`).waitFor();
      await shot(page, 'server-detail');
    });

    await check('a test call streams its SSE events with the request id', async () => {
      await page.locator(`[data-tool=${TOOL}]`).getByRole('link', { name: 'Test' }).click();
      await page.waitForURL(/\/console\?/);
      await page.locator('#root_id').fill('2');
      await page.getByRole('button', { name: `Call ${TOOL}` }).click();
      await page.locator('[data-event="tool_call.completed"]').waitFor({ timeout: 15_000 });
      const events = await page.locator('[data-testid=events] [data-event]').evaluateAll((els) => els.map((e) => e.getAttribute('data-event')));
      assert(events[0] === 'tool_call.started', `first event ${events[0]}`);
      assert(events.includes('output.delta'), `no output.delta in ${events.join(', ')}`);
      assert((await page.getByTestId('http-status').textContent()) === '200', 'status is not 200');
      const requestId = (await page.getByTestId('request-id').textContent()) ?? '';
      assert(/^[0-9a-f-]{16,}$/i.test(requestId), `request id ${requestId}`);
      const delta = await page.locator('[data-event="output.delta"] pre').first().textContent();
      assert(delta?.includes(requestId), 'the events do not carry the request id');
      await shot(page, 'test-console');
    });

    await check('a validation error shows its JSON pointer on the field', async () => {
      await page.locator('#root_id').fill('0');
      await page.getByRole('button', { name: `Call ${TOOL}` }).click();
      await page.getByTestId('call-error').waitFor();
      assert((await page.getByTestId('http-status').textContent()) === '400', 'status is not 400');
      assert((await page.getByTestId('pointer').first().textContent()) === '/id', 'pointer is not /id');
      const group = page.locator('.form-group.has-error', { has: page.locator('#root_id') });
      await group.getByText('(/id)').waitFor();
      await shot(page, 'test-console-validation');
      const history = await page.getByTestId('history').locator('tbody tr').count();
      assert(history >= 2, `history has ${history} rows`);
    });

    await check('the raw JSON mode calls with what is typed', async () => {
      await page.getByRole('button', { name: 'Raw JSON' }).click();
      await setEditor(page, '[data-testid=raw-args]', '{"id": 3}');
      await page.getByRole('button', { name: `Call ${TOOL}` }).click();
      await page.locator('[data-event="tool_call.completed"]').waitFor();
    });

    await check('the OpenAPI import previews created, changed and removed tools, then applies', async () => {
      const doc = (summary: string, withDelete: boolean) => ({
        openapi: '3.0.3',
        info: { title: 'e2e', version: '1' },
        paths: {
          '/fruits': { get: { operationId: 'listFruits', summary } },
          '/fruits/{id}': {
            get: { operationId: 'getFruit', parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'integer' } }] },
            ...(withDelete ? { delete: { operationId: 'deleteFruit', parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'integer' } }] } } : {}),
          },
        },
      });
      await page.goto(`${dashboard}openapi`);
      await page.getByTestId('openapi-server').fill('e2e_openapi');
      await page.getByTestId('openapi-document').fill(JSON.stringify(doc('All fruits', true), null, 2));
      await page.getByTestId('openapi-base-url').fill(`${hub.mock}/fruits`);
      await page.getByTestId('openapi-preview').click();
      const report = page.locator('[data-testid=openapi-report][data-dry-run=true]');
      await report.waitFor();
      const created = await page.locator('[data-testid=openapi-created] li').count();
      assert(created === 3, `preview: ${created} created`);
      const before = await api<unknown[]>(hub, '/api/tools/e2e_openapi').catch(() => []);
      assert(Array.isArray(before) ? before.length === 0 : true, 'the preview wrote nothing');
      await page.getByTestId('openapi-apply').click();
      await page.locator('[data-testid=openapi-report][data-dry-run=false]').waitFor();
      const tools = await api<Record<string, unknown>[] | Record<string, unknown>>(hub, '/api/tools/e2e_openapi');
      const count = Array.isArray(tools) ? tools.length : Object.keys(tools).length;
      assert(count === 3, `imported ${count} tools`);
      // A new version: one summary changed, one operation gone; replace shows it removed.
      await page.getByTestId('openapi-document').fill(JSON.stringify(doc('Every fruit', false)));
      await page.getByTestId('openapi-mode').selectOption('replace');
      await page.getByTestId('openapi-preview').click();
      await page.locator('[data-testid=openapi-report][data-dry-run=true] [data-testid=openapi-removed] li').first().waitFor();
      const changed = await page.locator('[data-testid=openapi-changed] li').allTextContents();
      const removed = await page.locator('[data-testid=openapi-removed] li').allTextContents();
      assert(changed.length === 1 && removed.length === 1, `changed ${changed.join(',')}, removed ${removed.join(',')}`);
      await shot(page, 'openapi-import');
      await page.getByTestId('openapi-apply').click();
      await page.locator('[data-testid=openapi-report][data-dry-run=false]').waitFor();
      const after = await api<Record<string, unknown>[] | Record<string, unknown>>(hub, '/api/tools/e2e_openapi');
      const left = Array.isArray(after) ? after.length : Object.keys(after).length;
      assert(left === 2, `after replace: ${left} tools`);
      // The later checks count the registry's servers.
      const gone = await fetch(`${hub.admin}/api/servers/e2e_openapi`, { method: 'DELETE' });
      assert(gone.ok, `delete e2e_openapi: ${gone.status}`);
    });

    await check('the audit page lists the calls, filters them and follows new ones live', async () => {
      await page.goto(`${dashboard}audit`);
      await page.getByTestId('audit-filter-server').fill(SERVER);
      await page.getByTestId('audit-apply').click();
      await page.locator('[data-testid=audit-row]').first().waitFor({ timeout: 15_000 });
      const servers = await page.locator('[data-testid=audit-row] td:nth-child(2)').allTextContents();
      assert(servers.length >= 2 && servers.every((s) => s === SERVER), `rows: ${servers.join(', ')}`);
      await page.getByTestId('audit-follow').check();
      // A call from outside the page: the live stream brings its entry.
      await waitUntil('a call through the gateway', 10_000, async () => {
        const r = await fetch(`${hub.gateway}/mcp/${SERVER}/${TOOL}`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', 'x-request-id': 'e2e-audit-live' },
          body: JSON.stringify({ args: { id: 2 } }),
        });
        await r.text();
        return r.ok;
      });
      await page.locator('[data-testid=audit-row][data-request-id=e2e-audit-live]').waitFor({ timeout: 15_000 });
      await shot(page, 'audit');
      await page.getByTestId('audit-follow').uncheck();
      await page.getByTestId('audit-filter-status').selectOption('error');
      await page.getByTestId('audit-apply').click();
      await page.getByText('No entries.').waitFor();
    });

    for (let k = 1; k <= kills; k++) {
      const where = k % 2 === 1 ? 'servers list' : 'server detail';
      await check(`kill -9 of the worker shows on the ${where} and recovers without reload (${k}/${kills})`, async () => {
        if (where === 'servers list') {
          await page.goto(dashboard);
        } else {
          await page.goto(`${dashboard}servers/${SERVER}`);
        }
        const [before] = await waitUntil('a settled running worker', settleMs + 30_000, async () => {
          const w = await workers(hub, SERVER);
          const settled = w.length && w[0].status === 'running' && w[0].pid && Date.now() - (w[0].startedAt ?? 0) >= settleMs;
          return settled ? w : undefined;
        });
        const statusSel = where === 'servers list' ? `tr[data-server=${SERVER}] [data-status]` : '[data-testid=worker]';
        const restartsSel = where === 'servers list' ? `tr[data-server=${SERVER}] [data-testid=restarts]` : '[data-testid=worker-restarts]';
        await page.locator(`${statusSel}[data-status=running]`).first().waitFor();
        await watchRecovery(page, statusSel, restartsSel, before.restarts);
        const killedAt = Date.now();
        process.kill(before.pid as number, 'SIGKILL');
        const seen = await recovery(page);
        const after = await workers(hub, SERVER);
        timings.push({
          kill: k,
          page: where,
          notRunningMs: seen.down - killedAt,
          runningAgainMs: seen.up - killedAt,
          restartsBefore: before.restarts,
          restartsAfter: after[0]?.restarts ?? -1,
        });
        assert(seen.down - killedAt < 1000, `not running shown ${seen.down - killedAt} ms after the kill`);
        if (where === 'server detail') {
          const failure = await page.getByTestId('last-failure').textContent();
          assert(failure && /signal|SIGKILL|killed|exit/i.test(failure), `last failure: ${failure}`);
          await shot(page, 'server-detail-after-kill');
        } else {
          await shot(page, 'servers');
        }
      });
    }

    await check('the server page shows the circuit breaker open after the REST API fails', async () => {
      const id = 'e2e_breaker';
      const put = (path: string, body: unknown, method = 'POST') =>
        fetch(path, { method, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
      assert((await put(`${hub.mock}/control/faults/e2e-breaker`, { status: 503 }, 'PUT')).ok, 'fault set');
      const created = await put(`${hub.admin}/api/servers/${id}`, {
        baseUrl: hub.mock,
        timeoutMs: 5000,
        circuitBreaker: { failureThreshold: 2, coolDownMs: 600000 },
      });
      assert(created.ok, `create ${id}: ${created.status}`);
      const tool = await put(`${hub.admin}/api/tools/${id}/flaky`, {
        name: 'flaky', method: 'GET', pathTemplate: '/fault/e2e-breaker/test/echo',
      });
      assert(tool.ok, `create tool: ${tool.status}`);
      // The server goes whatever happens: one left behind would change every later check.
      try {
        await page.goto(`${dashboard}servers/${id}`);
        await page.locator('[data-testid=worker][data-status=running]').waitFor({ timeout: 15_000 });
        await page.locator('[data-testid=worker-breaker][data-breaker=none]').waitFor();
        // Two failed calls open it; the third fails fast. The page follows the record's event.
        await waitUntil('the breaker to open', 10_000, async () => {
          const r = await fetch(`${hub.gateway}/mcp/${id}/flaky`, {
            method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ args: {} }),
          });
          return (await r.text()).includes('circuit_open');
        });
        await page.locator('[data-testid=worker-breaker][data-breaker=open]').waitFor({ timeout: 10_000 });
        const text = (await page.getByTestId('worker-breaker').textContent()) ?? '';
        assert(/open: calls fail fast/.test(text) && /opened 1×/.test(text) && /in a row \(opens at 2\)/.test(text), `breaker shown: ${text}`);
        // Why it opened, next to the state (the record's openedBy).
        const reason = page.locator('[data-testid=worker-breaker-reason][data-reason=consecutive_failures]');
        await reason.waitFor({ timeout: 10_000 });
        const why = (await reason.textContent()) ?? '';
        assert(why.trim() === '— opened by failures in a row', `why it opened: ${why}`);
        await shot(page, 'server-detail-breaker-open');
      } finally {
        // Off its page first: a deleted server's page would fetch a 404.
        await page.goto(`${dashboard}servers`);
        const gone = await fetch(`${hub.admin}/api/servers/${id}`, { method: 'DELETE' });
        assert(gone.ok, `delete ${id}: ${gone.status}`);
      }
    });

    await check('the server form edits the breaker\'s error-rate fields, with the API\'s messages', async () => {
      const id = 'e2e_breaker_form';
      const field = (label: string) => page.locator('.field', { has: page.getByLabel(label, { exact: true }) });
      try {
        await page.goto(`${dashboard}servers/new`);
        await page.getByLabel('Server id').fill(id);
        await page.getByLabel('Base URL').fill(hub.mock);
        await page.getByLabel('Guard this REST API with a circuit breaker', { exact: false }).check();
        // Out of range: the admin API's 422 names each field, shown next to it.
        await page.getByLabel('Error rate (%)').fill('150');
        await page.getByLabel('Window (ms)').fill('50');
        await page.getByLabel('Minimum calls').fill('0');
        await page.getByRole('button', { name: 'Create server' }).click();
        await field('Error rate (%)').getByText('must be between 1 and 100').waitFor();
        await field('Window (ms)').getByText('must be between 100 and 600000').waitFor();
        await field('Minimum calls').getByText('must be between 1 and 100000').waitFor();
        await shot(page, 'server-form-breaker-errors');
        // Not a number: the API's JSON type error, as it words it.
        await page.getByLabel('Error rate (%)').fill('50');
        await page.getByLabel('Minimum calls').fill('10');
        await page.getByLabel('Window (ms)').fill('5s');
        await page.getByRole('button', { name: 'Create server' }).click();
        await field('Window (ms)').getByText('invalid type: string, expected u64').waitFor();
        // The rule's fields without the rate: the API says they would do nothing.
        await page.getByLabel('Error rate (%)').fill('');
        await page.getByLabel('Window (ms)').fill('5000');
        await page.getByRole('button', { name: 'Create server' }).click();
        await field('Window (ms)').getByText('has no effect without circuitBreaker.errorRatePercent').waitFor();
        await page.getByLabel('Failures in a row').fill('3');
        await page.getByLabel('Cool-down (ms)').fill('60000');
        await page.getByLabel('Error rate (%)').fill('50');
        await page.getByRole('button', { name: 'Create server' }).click();
        await page.waitForURL(new RegExp(`/dashboard/servers/${id}$`));
        const expected = { failureThreshold: 3, coolDownMs: 60000, errorRatePercent: 50, windowMs: 5000, minCalls: 10 };
        const stored = await api<{ circuitBreaker?: Record<string, number> }>(hub, `/api/servers/${id}`);
        assert(JSON.stringify(stored.circuitBreaker) === JSON.stringify(expected), `stored ${JSON.stringify(stored.circuitBreaker)}`);
        // Reloaded: the detail page and the form show what was saved.
        await page.reload();
        const rule = page.getByTestId('settings-breaker');
        await rule.getByText('opens after 3 failures in a row or when 50% of at least 10 attempts in 5.00 s failed; one probe after 60.00 s open').waitFor();
        await shot(page, 'server-detail-breaker-settings');
        await page.getByRole('link', { name: 'Edit', exact: true }).first().click();
        await page.getByLabel('Error rate (%)').waitFor();
        for (const [label, value] of [['Failures in a row', '3'], ['Cool-down (ms)', '60000'], ['Error rate (%)', '50'], ['Window (ms)', '5000'], ['Minimum calls', '10']]) {
          const shown = await page.getByLabel(label, { exact: true }).inputValue();
          assert(shown === value, `${label} shows ${shown}, saved ${value}`);
        }
        await shot(page, 'server-form-breaker');
        // Unticked: saved without a breaker.
        await page.getByLabel('Guard this REST API with a circuit breaker', { exact: false }).uncheck();
        await page.getByRole('button', { name: 'Save server' }).click();
        await page.waitForURL(new RegExp(`/dashboard/servers/${id}$`));
        await page.getByTestId('settings-breaker').getByText('none').waitFor();
        const after = await api<{ circuitBreaker?: unknown }>(hub, `/api/servers/${id}`);
        assert(after.circuitBreaker === undefined, `breaker left: ${JSON.stringify(after.circuitBreaker)}`);
      } finally {
        await page.goto(`${dashboard}servers`);
        const gone = await fetch(`${hub.admin}/api/servers/${id}`, { method: 'DELETE' });
        assert(gone.ok, `delete ${id}: ${gone.status}`);
      }
    });

    await check('a masked credential header has a hint, and saving the form keeps its stored value', async () => {
      const id = 'e2e_headers';
      const stored = 'e2e-stored-header-key-0123';
      try {
        await page.goto(`${dashboard}servers/new`);
        await page.getByLabel('Server id').fill(id);
        await page.getByLabel('Base URL').fill(hub.mock);
        const headers = page.locator('fieldset', { has: page.locator('legend', { hasText: 'Default headers' }) });
        await headers.getByRole('button', { name: '+ Add' }).click();
        await page.getByLabel('Default headers: Header 1').fill('X-Api-Key');
        await page.getByLabel('Default headers: Value 1').fill(stored);
        await headers.getByRole('button', { name: '+ Add' }).click();
        await page.getByLabel('Default headers: Header 2').fill('Accept');
        await page.getByLabel('Default headers: Value 2').fill('application/json');
        const hints = headers.getByTestId('kv-hint');
        await hints.getByText('A credential: stored, and shown as ******** from now on.').waitFor();
        assert((await hints.count()) === 1, `${await hints.count()} hints for one credential header`);
        await page.getByRole('button', { name: 'Create server' }).click();
        await page.waitForURL(new RegExp(`/dashboard/servers/${id}$`));
        const tool = await fetch(`${hub.admin}/api/tools/${id}/echo`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ name: 'echo', method: 'GET', pathTemplate: '/test/echo' }),
        });
        assert(tool.ok, `create tool: ${tool.status}`);
        const settings = (await page.getByTestId('settings').textContent()) ?? '';
        assert(settings.includes('X-Api-Key: ********') && !settings.includes(stored), `headers shown: ${settings}`);
        // The edit form (headers in the registry's order: Accept, X-Api-Key): the mask in
        // the value, the hint next to it, the other header plain.
        await page.getByRole('link', { name: 'Edit', exact: true }).first().click();
        const value = page.getByLabel('Default headers: Value 2');
        await value.waitFor();
        assert((await page.getByLabel('Default headers: Header 2').inputValue()) === 'X-Api-Key', 'second header is not X-Api-Key');
        assert((await value.inputValue()) === '********', `value shows ${await value.inputValue()}`);
        const hint = page.getByText('******** keeps the stored value; type a new one to replace it.');
        await hint.waitFor();
        assert((await value.getAttribute('aria-describedby')) === (await hint.getAttribute('id')), 'the hint does not describe the value');
        assert((await page.getByLabel('Default headers: Value 1').getAttribute('aria-describedby')) === null, 'Accept has a hint');
        assert(!(await page.content()).includes(stored), 'the stored header value is in the form');
        await shot(page, 'server-form-masked-header');
        // Saved without touching the header: the REST API still gets the stored value.
        await page.getByLabel('Display name').fill('Headers kept');
        await page.getByRole('button', { name: 'Save server' }).click();
        await page.waitForURL(new RegExp(`/dashboard/servers/${id}$`));
        await page.getByRole('heading', { name: 'Headers kept' }).waitFor();
        const body = await waitUntil('a call through the gateway', 20_000, async () => {
          const r = await fetch(`${hub.gateway}/mcp/${id}/echo`, {
            method: 'POST',
            headers: { 'Content-Type': 'application/json' },
            body: JSON.stringify({ args: {} }),
          });
          const text = await r.text();
          return r.ok && text.includes('x-api-key') ? text : undefined;
        });
        assert(body.includes(stored), `the REST API did not get the stored value: ${body.slice(0, 400)}`);
        assert(!body.includes('********'), 'the REST API got the mask');
        // A new value typed over the mask replaces it.
        await page.getByRole('link', { name: 'Edit', exact: true }).first().click();
        await page.getByLabel('Default headers: Value 2').fill('e2e-new-header-key');
        await page.getByText('A credential: stored, and shown as ******** from now on.').waitFor();
        await page.getByRole('button', { name: 'Save server' }).click();
        await page.waitForURL(new RegExp(`/dashboard/servers/${id}$`));
        await waitUntil('the new header value at the REST API', 20_000, async () => {
          const r = await fetch(`${hub.gateway}/mcp/${id}/echo`, {
            method: 'POST',
            headers: { 'Content-Type': 'application/json' },
            body: JSON.stringify({ args: {} }),
          });
          return (await r.text()).includes('e2e-new-header-key');
        });
      } finally {
        await page.goto(`${dashboard}servers`);
        const gone = await fetch(`${hub.admin}/api/servers/${id}`, { method: 'DELETE' });
        assert(gone.ok, `delete ${id}: ${gone.status}`);
      }
    });

    await check('Restart asks first, then the new worker appears live', async () => {
      await page.goto(`${dashboard}servers/${SERVER}`);
      const [before] = await waitUntil('a running worker', 15_000, async () => {
        const w = await workers(hub, SERVER);
        return w.length && w[0].status === 'running' ? w : undefined;
      });
      await page.getByRole('button', { name: 'Restart', exact: true }).click();
      const dialog = page.getByRole('dialog', { name: `Restart ${SERVER}?` });
      await dialog.waitFor();
      await dialog.getByRole('button', { name: 'Restart workers' }).click();
      await page.waitForFunction(
        (pid) => {
          const w = document.querySelector('[data-testid=worker]');
          const shown = w?.querySelector('[data-testid=worker-pid]')?.textContent;
          return w?.getAttribute('data-status') === 'running' && shown !== String(pid) && shown !== '—';
        },
        before.pid,
        { timeout: 15_000 },
      );
    });

    await check('deactivate stops the worker and activate starts it again', async () => {
      await page.getByRole('button', { name: 'Deactivate' }).click();
      await page.getByRole('button', { name: 'Activate' }).waitFor();
      await page.waitForFunction(() => document.querySelector('[data-testid=worker][data-status=running]') === null, undefined, { timeout: 15_000 });
      await page.getByRole('button', { name: 'Activate' }).click();
      await page.locator('[data-testid=worker][data-status=running]').waitFor({ timeout: 15_000 });
    });

    await check('the overview shows totals and per-server calls from the gateway metrics', async () => {
      await page.goto(`${dashboard}overview`);
      await page.getByTestId('tile-servers').getByText('1', { exact: true }).waitFor();
      const row = page.locator(`[data-testid=metrics-table] tr[data-server=${SERVER}]`);
      await row.waitFor({ timeout: 10_000 });
      const calls = Number(await row.getByTestId('calls').textContent());
      assert(calls >= 3, `calls ${calls}`);
      const errors = Number((await row.getByTestId('errors').textContent())?.match(/^\d+/)?.[0]);
      assert(errors >= 1, `errors ${errors}`);
      // A few calls so the sparkline has a slope.
      for (let i = 0; i < 16; i++) {
        await fetch(`${hub.gateway}/mcp/${SERVER}/${TOOL}`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ args: { id: 1 + (i % 3) } }),
        }).then((r) => r.text());
        await page.waitForTimeout(500);
      }
      await page.waitForFunction((n) => Number(document.querySelector(`[data-testid=metrics-table] tr[data-server=e2e_fruits] [data-testid=calls]`)?.textContent) >= n, calls + 16, { timeout: 10_000 });
      await shot(page, 'overview');
    });

    let exported: { servers: Record<string, unknown>; tools: Record<string, Record<string, unknown>> } | undefined;
    await check('export downloads the registry with secrets masked', async () => {
      await page.goto(`${dashboard}registry`);
      const download = page.waitForEvent('download');
      await page.getByRole('button', { name: 'Download export' }).click();
      const file = await (await download).path();
      const text = readFileSync(file, 'utf8');
      assert(!text.includes(SECRET), 'the export holds the secret');
      exported = JSON.parse(text);
      assert(exported?.servers[SERVER], 'the export lacks the server');
      await page.getByTestId('export-result').waitFor();
    });

    await check('import previews the changes, then imports', async () => {
      assert(exported, 'no export');
      const doc = structuredClone(exported);
      doc.servers['e2e_imported'] = { name: 'Imported fruits', baseUrl: `${hub.mock}/api`, active: true };
      doc.tools['e2e_imported'] = { [TOOL]: { ...(doc.tools[SERVER][TOOL] as object) } };
      (doc.servers[SERVER] as { defaultHeaders: Record<string, string> }).defaultHeaders = { Accept: 'application/json', 'X-Team': 'e2e' };
      const path = join(out, 'import.json');
      writeFileSync(path, JSON.stringify(doc, null, 2));
      await page.getByTestId('import-file').setInputFiles(path);
      const preview = page.getByTestId('import-preview');
      await preview.waitFor();
      await preview.locator('tr[data-change=add]').first().waitFor();
      const added = await preview.locator('tr[data-change=add]').count();
      const changed = await preview.locator('tr[data-change=change]').count();
      assert(added === 2 && changed === 1, `preview: ${added} new, ${changed} changed`);
      await shot(page, 'import-export');
      await page.getByRole('button', { name: 'Import (merge)' }).click();
      await page.getByTestId('import-result').getByText('Imported 2 servers and 2 tools').waitFor();
      await page.goto(dashboard);
      await page.locator('tr[data-server=e2e_imported] [data-status=running]').waitFor({ timeout: 15_000 });
      await noSecret(page, 'servers after import');
    });

    await check('search filters the servers list', async () => {
      await page.getByPlaceholder('Search by id, name or URL').fill('imported');
      await page.locator(`tr[data-server=${SERVER}]`).waitFor({ state: 'detached' });
      await page.locator('tr[data-server=e2e_imported]').waitFor();
      await page.getByPlaceholder('Search by id, name or URL').fill('');
      await shot(page, 'servers-two');
    });

    await check('delete asks first, then the server is gone', async () => {
      await page.goto(`${dashboard}servers/e2e_imported`);
      await page.getByRole('button', { name: 'Delete', exact: true }).first().click();
      const dialog = page.getByRole('dialog', { name: 'Delete e2e_imported?' });
      await dialog.getByRole('button', { name: 'Delete server and tools' }).click();
      await page.waitForURL(/\/dashboard\/$/);
      await page.locator('tr[data-server=e2e_imported]').waitFor({ state: 'detached' });
    });

    await check('the keyboard reaches the navigation and the main action', async () => {
      await page.goto(dashboard);
      await page.locator(`tr[data-server=${SERVER}]`).waitFor();
      const reached: string[] = [];
      // Skip link, brand, six navigation links, then the page's first action.
      for (let i = 0; i < 10; i++) {
        await page.keyboard.press('Tab');
        reached.push(await page.evaluate(() => document.activeElement?.textContent?.trim() ?? ''));
      }
      for (const label of ['Servers', 'Overview', 'Test console', '+ New server'])
        assert(reached.includes(label), `Tab never reached ${label}: ${reached.join(' | ')}`);
    });

    await check('a phone-sized screen (390 wide) has no horizontal scroll', async () => {
      const phone = await context.newPage();
      watch(phone);
      await phone.setViewportSize({ width: 390, height: 844 });
      for (const path of ['', `servers/${SERVER}`, `console?server=${SERVER}&tool=${TOOL}`, 'overview']) {
        await phone.goto(dashboard + path);
        await phone.locator('h1').first().waitFor();
        await phone.waitForTimeout(300);
        const width = await phone.evaluate(() => document.documentElement.scrollWidth);
        assert(width <= 390, `${path || 'servers'}: the page is ${width} px wide`);
      }
      await phone.goto(dashboard);
      await phone.locator(`tr[data-server=${SERVER}]`).waitFor();
      await shot(phone, 'phone-servers');
      await phone.goto(`${dashboard}servers/${SERVER}`);
      await phone.locator('[data-testid=worker]').waitFor();
      await shot(phone, 'phone-server-detail');
      await phone.close();
    });

    await check('with MCP_ADMIN_TOKEN the console asks for it once and says so on 401', async () => {
      const admin = await hub.startTokenAdmin(TOKEN);
      const ctx: BrowserContext = await browser!.newContext({ viewport: { width: 1280, height: 800 } });
      const p = await ctx.newPage();
      watchTokenPage(p);
      try {
        await p.goto(`${admin.url}/dashboard/`);
        const dialog = p.getByRole('dialog');
        await dialog.getByText('Admin token required').waitFor();
        await dialog.getByLabel('Token').fill('wrong-token-0123456789');
        await dialog.getByRole('button', { name: 'Use token' }).click();
        await p.getByRole('dialog').getByText('refused the token').waitFor();
        await shot(p, 'token-refused');
        await p.getByRole('dialog').getByLabel('Token').fill(TOKEN);
        await p.getByRole('dialog').getByRole('button', { name: 'Use token' }).click();
        await p.locator(`tr[data-server=${SERVER}]`).waitFor();
        await p.getByTestId('live').getByText('live').waitFor();
        // Kept for the session: a reload does not ask again.
        await p.reload();
        await p.locator(`tr[data-server=${SERVER}]`).waitFor();
        assert((await p.getByRole('dialog').count()) === 0, 'asked again after a reload');
        // An admin API that goes away gets a clear message.
        await admin.stop();
        await p.getByRole('link', { name: 'Overview' }).click();
        await p.getByText('The admin API cannot be reached').first().waitFor({ timeout: 10_000 });
        await shot(p, 'admin-unreachable');
      } finally {
        await ctx.close();
        await admin.stop();
      }
    });

    await check('no secret was ever rendered, no asset came from elsewhere', async () => {
      await noSecret(page, 'last page');
      assert(foreignRequests.length === 0, `requests to other origins: ${foreignRequests.join(', ')}`);
    });

    await check('no console errors', async () => {
      assert(consoleErrors.length === 0, consoleErrors.join('\n'));
    });
  } catch (err) {
    results.push({ name: 'suite set-up', ok: false, ms: 0, error: String(err) });
    console.log(`FAIL  suite set-up: ${String(err)}`);
  } finally {
    await browser?.close().catch(() => undefined);
    await hub.stop();
  }

  const passed = results.filter((r) => r.ok).length;
  const failed = results.length - passed;
  writeFileSync(join(out, 'results.json'), JSON.stringify({ passed, failed, results, consoleErrors }, null, 2));
  writeFileSync(join(out, 'kill-to-visible.json'), JSON.stringify({ binDir, chromium: chromiumPath, timings }, null, 2));
  if (timings.length) {
    for (const t of timings)
      console.log(`kill ${t.kill} (${t.page}): not running shown after ${t.notRunningMs} ms, running again after ${t.runningAgainMs} ms (restarts ${t.restartsBefore} -> ${t.restartsAfter})`);
  }
  console.log(`dashboard: ${passed} passed, ${failed} failed`);
  process.exitCode = failed ? 1 : 0;

  // Console errors of the token page are expected 401s: kept apart.
  function watchTokenPage(p: Page) {
    p.on('pageerror', (e) => consoleErrors.push(`${p.url()}: ${e.message}`));
  }
}

main().catch((err) => {
  console.error(err);
  console.log('dashboard: 0 passed, 1 failed');
  process.exit(1);
});
