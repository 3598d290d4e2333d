// Starts a whole hub for the browser suite with the one hub launcher of the Rust tests
// (`mcp-test-hub`, testkit/src/bin/test_hub.rs over `mcp_testkit::hub`): a real
// redis-server on a free port, the mock REST API, mcp-admin (serving this folder's
// build), mcp-supervisor (which spawns real mcp-worker processes) and mcp-gateway in
// front, all on free ports under a unique key prefix, each logging to its own file.
// `stop()` ends them all; so does this process ending (the launcher watches its stdin).

import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

export interface Hub {
  gateway: string;
  admin: string;
  mock: string;
  redisUrl: string;
  prefix: string;
  metricsUrl: string;
  logDir: string;
  /** Another mcp-admin on the same registry that requires `token`. */
  startTokenAdmin(token: string): Promise<{ url: string; stop: () => Promise<void> }>;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

async function waitFor(what: string, deadlineMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (err) {
      lastError = err;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what} did not come up within ${deadlineMs} ms${lastError ? `: ${String(lastError)}` : ''}`);
}

async function answers(url: string): Promise<boolean> {
  const response = await fetch(url);
  return response.ok;
}

async function stopChild(child: ChildProcess, signalGroup: boolean): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const kill = (signal: NodeJS.Signals) => {
    try {
      if (child.pid) process.kill(signalGroup ? -child.pid : child.pid, signal);
    } catch {
      // gone
    }
  };
  kill('SIGTERM');
  // The launcher stops the supervisor (and so its workers) first: give it time.
  const timer = setTimeout(() => kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(timer);
}

export async function startHub(options: { binDir: string; distDir: string; logDir: string; env?: Record<string, string> }): Promise<Hub> {
  mkdirSync(options.logDir, { recursive: true });
  const env = { ...process.env, MCP_ENV_FILE: '/nonexistent/.env', MCP_LOG_FORMAT: 'json', ...(options.env ?? {}) };
  const bin = (name: string) => join(options.binDir, name);
  const launcherLog = openSync(join(options.logDir, 'mcp-test-hub.log'), 'a');
  const launcher = spawn(
    bin('mcp-test-hub'),
    [
      '--log-dir', options.logDir,
      `--admin-flag=--dashboard-dir=${options.distDir}`,
      '--supervisor-flag=--supervisor-id=sup-e2e',
      '--supervisor-flag=--orphan-timeout=5s',
    ],
    { env, stdio: ['pipe', 'pipe', launcherLog] },
  );
  const urls = await new Promise<Record<string, string>>((resolve, reject) => {
    const lines = createInterface({ input: launcher.stdout! });
    const timer = setTimeout(() => reject(new Error('mcp-test-hub did not report within 60 s (see mcp-test-hub.log)')), 60_000);
    lines.once('line', (line) => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(line));
      } catch (err) {
        reject(new Error(`mcp-test-hub printed ${line}: ${String(err)}`));
      }
    });
    launcher.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`mcp-test-hub exited with ${code} before the hub was up (see ${options.logDir}/mcp-test-hub.log)`));
    });
  });
  const extra: ChildProcess[] = [];

  return {
    gateway: urls.gateway,
    admin: urls.admin,
    mock: urls.mock,
    redisUrl: urls.redisUrl,
    prefix: urls.prefix,
    metricsUrl: urls.metricsUrl,
    logDir: options.logDir,
    async startTokenAdmin(token: string) {
      const port = await freePort();
      const log = openSync(join(options.logDir, 'admin-token.log'), 'a');
      const child = spawn(
        bin('mcp-admin'),
        ['--redis-url', urls.redisUrl, '--key-prefix', urls.prefix, '--listen', `127.0.0.1:${port}`, '--dashboard-dir', options.distDir, '--gateway-metrics-url', urls.metricsUrl],
        { env: { ...env, MCP_ADMIN_TOKEN: token }, stdio: ['ignore', log, log], detached: true },
      );
      extra.push(child);
      const url = `http://127.0.0.1:${port}`;
      await waitFor('the admin API with a token', 20_000, () => answers(`${url}/healthz`));
      return { url, stop: () => stopChild(child, true) };
    },
    async stop() {
      for (const child of extra) await stopChild(child, true);
      await stopChild(launcher, false);
    },
  };
}
