// Owns how worker records read on screen: one state per server from its replicas, the
// badge tone of each status, time formatting, and a circuit breaker's rule and why it
// opened in words.

import type { CircuitBreakerConfig, Resilience, ServerView, WorkerRecord, WorkerStatus } from './types';

export type Tone = 'ok' | 'warn' | 'bad' | 'idle';

export function tone(status: WorkerStatus | 'none' | 'inactive'): Tone {
  switch (status) {
    case 'running':
      return 'ok';
    case 'starting':
    case 'restarting':
    case 'pending':
    case 'stopping':
    case 'unhealthy':
      return 'warn';
    case 'failed':
      return 'bad';
    default:
      return 'idle';
  }
}

export interface ServerState {
  /** The one word shown in the list. */
  status: WorkerStatus | 'none' | 'inactive';
  running: number;
  desired: number;
  restarts: number;
  ports: string[];
}

const WORST_FIRST: WorkerStatus[] = [
  'failed',
  'unhealthy',
  'restarting',
  'starting',
  'pending',
  'stopping',
  'stopped',
  'idle',
  'running',
];

export function serverState(server: ServerView, workers: WorkerRecord[]): ServerState {
  const desired = server.active ? (server.replicas ?? 1) : 0;
  const running = workers.filter((w) => w.status === 'running').length;
  const restarts = workers.reduce((sum, w) => sum + (w.restarts ?? 0), 0);
  const ports = workers.filter((w) => w.port).map((w) => `${w.port}`);
  let status: ServerState['status'];
  if (workers.length === 0) status = server.active ? 'none' : 'inactive';
  else status = WORST_FIRST.find((s) => workers.some((w) => w.status === s)) ?? 'running';
  if (!server.active && status === 'stopped') status = 'inactive';
  return { status, running, desired, restarts, ports };
}

export function statusLabel(status: ServerState['status']): string {
  if (status === 'none') return 'no worker';
  return status;
}

export function formatTime(ms?: number): string {
  if (!ms) return '—';
  const date = new Date(ms);
  return date.toLocaleString(undefined, {
    year: 'numeric',
    month: 'short',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
  });
}

export function ago(ms: number | undefined, now: number): string {
  if (!ms) return '—';
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

export function formatMs(ms?: number): string {
  if (ms === undefined || ms === null || Number.isNaN(ms)) return '—';
  if (ms < 10) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${ms.toFixed(1)} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}

/** When a circuit breaker opens and probes, its defaults filled in as the worker fills
 *  them (core::model::CircuitBreakerConfig). */
export function breakerRule(cb: CircuitBreakerConfig): string {
  const threshold = cb.failureThreshold ?? 5;
  const parts = [`opens after ${threshold} failure${threshold === 1 ? '' : 's'} in a row`];
  if (cb.errorRatePercent !== undefined) {
    const minCalls = Math.max(cb.minCalls ?? 20, 1);
    parts.push(`or when ${cb.errorRatePercent}% of at least ${minCalls} attempt${minCalls === 1 ? '' : 's'} in ${formatMs(cb.windowMs ?? 10_000)} failed`);
  }
  return `${parts.join(' ')}; one probe after ${formatMs(cb.coolDownMs ?? 30_000)} open`;
}

/** Why an open (or half-open) breaker opened, in words; undefined when the record does
 *  not say (closed, or written by an older worker). */
export function breakerOpenedBy(r: Pick<Resilience, 'openedBy'>): string | undefined {
  const reason = r.openedBy;
  switch (reason?.kind) {
    // The count of the streak is the counters' "N failures in a row" beside it.
    case 'consecutive_failures':
      return 'opened by failures in a row';
    case 'error_rate': {
      const { failed, calls } = reason;
      const percent = Math.floor((failed * 100) / Math.max(calls, 1));
      return `opened: ${failed} of ${calls} call${calls === 1 ? '' : 's'} failed (${percent}%)`;
    }
    case 'probe_failed':
      return 'reopened: the half-open probe failed';
    default:
      return undefined;
  }
}
