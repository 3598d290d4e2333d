// Starts a whole hub for the browser suite, the way the Rust end-to-end tests do: a
// real redis-server on a free port, the mock REST API, mcp-admin (serving this
// folder's build), mcp-supervisor (which spawns real mcp-worker processes) and
// mcp-gateway in front, all on free ports under a unique key prefix, each logging to
// its own file. `stop()` ends them all (each runs in its own process group).

import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';

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

export async function startHub(options: { binDir: string; distDir: string; logDir: string; env?: Record<string, string> }): Promise<Hub> {
  mkdirSync(options.logDir, { recursive: true });
  const children: ChildProcess[] = [];
  const env = {
    ...process.env,
    MCP_ENV_FILE: '/nonexistent/.env',
    MCP_LOG_FORMAT: 'json',
    ...(options.env ?? {}),
  };
  const run = (name: string, command: string, args: string[], extraEnv: Record<string, string> = {}) => {
    const log = openSync(join(options.logDir, `${name}.log`), 'a');
    const child = spawn(command, args, {
      env: { ...env, ...extraEnv },
      stdio: ['ignore', log, log],
      detached: true,
    });
    children.push(child);
    return child;
  };
  const bin = (name: string) => join(options.binDir, name);
  const stopChild = async (child: ChildProcess) => {
    if (child.exitCode !== null || child.pid === undefined) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    try {
      process.kill(-child.pid, 'SIGTERM');
    } catch {
      return;
    }
    const timer = setTimeout(() => {
      try {
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // gone
      }
    }, 5000);
    await exited;
    clearTimeout(timer);
  };

  const redisPort = await freePort();
  run('redis', 'redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
  const redisUrl = `redis://127.0.0.1:${redisPort}`;
  const prefix = `e2e${process.pid}${Date.now().toString(36)}`;
  const common = ['--redis-url', redisUrl, '--key-prefix', prefix];

  const mockPort = await freePort();
  run('mock-api', bin('mcp-mock-api'), ['--listen', `127.0.0.1:${mockPort}`]);
  const mock = `http://127.0.0.1:${mockPort}`;
  await waitFor('the mock REST API', 20_000, () => answers(`${mock}/healthz`));

  const adminPort = await freePort();
  const metricsPort = await freePort();
  const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
  const adminArgs = (port: number) => [...common, '--listen', `127.0.0.1:${port}`, '--dashboard-dir', options.distDir, '--gateway-metrics-url', metricsUrl];
  run('admin', bin('mcp-admin'), adminArgs(adminPort));
  const admin = `http://127.0.0.1:${adminPort}`;
  await waitFor('the admin API', 20_000, () => answers(`${admin}/healthz`));

  const basePort = 21_000 + (process.pid % 40) * 100;
  run('supervisor', bin('mcp-supervisor'), [
    ...common,
    '--supervisor-id', 'sup-e2e',
    '--base-port', String(basePort),
    '--port-count', '100',
    '--worker-bin', bin('mcp-worker'),
    '--stop-workers-on-exit', 'true',
    '--orphan-timeout', '5s',
    '--stop-timeout', '2s',
  ]);

  const gatewayPort = await freePort();
  run('gateway', bin('mcp-gateway'), [
    ...common,
    '--listen', `127.0.0.1:${gatewayPort}`,
    '--metrics-listen', `127.0.0.1:${metricsPort}`,
    '--admin-upstream', `127.0.0.1:${adminPort}`,
    '--grace-period-secs', '1',
  ]);
  const gateway = `http://127.0.0.1:${gatewayPort}`;
  await waitFor('the gateway', 30_000, () => answers(`${gateway}/healthz`));

  return {
    gateway,
    admin,
    mock,
    redisUrl,
    prefix,
    metricsUrl,
    logDir: options.logDir,
    async startTokenAdmin(token: string) {
      const port = await freePort();
      const child = run('admin-token', bin('mcp-admin'), adminArgs(port), { MCP_ADMIN_TOKEN: token });
      const url = `http://127.0.0.1:${port}`;
      await waitFor('the admin API with a token', 20_000, () => answers(`${url}/healthz`));
      return { url, stop: () => stopChild(child) };
    },
    async stop() {
      // The gateway and the supervisor first (it stops its workers), Redis last.
      for (const child of [...children].reverse()) await stopChild(child);
    },
  };
}
