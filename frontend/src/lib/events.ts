// Owns the console's live view of the hub: one `GET /api/events` stream for the whole
// page (read with fetch, so the token can be sent), applied to TanStack Query's cache.
// A worker's status change is written into the cached runtime records at once (that is
// what makes a killed worker visible within a frame); registry changes refetch what
// they touch; `reload` (first connection, Redis reconnect, a missed event) refetches
// everything. The stream reconnects with back-off.

import { useEffect, useState } from 'react';
import type { QueryClient } from '@tanstack/react-query';
import { authHeaders, hubUrl } from './api';
import { readSse } from './sse';
import type { ServerRuntime, WorkerRecord } from './types';

export type LiveState = 'connecting' | 'live' | 'reconnecting' | 'unauthorized';

type Listener = (state: LiveState) => void;

interface WorkerEvent {
  type: string;
  version: number;
  serverId: string;
  worker?: WorkerRecord;
  replicaIdx?: number;
  toolName?: string;
}

/** Servers deleted since the page loaded: their queries must not refetch (a 404). */
const deleted = new Set<string>();

export function isDeleted(serverId: string): boolean {
  return deleted.has(serverId);
}

export function markDeleted(client: QueryClient, serverId: string): void {
  deleted.add(serverId);
  client.removeQueries({ queryKey: ['server', serverId] });
  client.removeQueries({ queryKey: ['tools', serverId] });
}

/** Undoes `markDeleted` when the delete failed. */
export function unmarkDeleted(serverId: string): void {
  deleted.delete(serverId);
}

function upsertWorker(list: WorkerRecord[], worker: WorkerRecord): WorkerRecord[] {
  const others = list.filter((w) => w.replicaIdx !== worker.replicaIdx);
  return [...others, worker].sort((a, b) => a.replicaIdx - b.replicaIdx);
}

/** True when the query at `key` holds an answer and no fetch of it is under way
 * (a query no page uses yet counts as settled: there is nothing to overwrite). */
function settled(client: QueryClient, key: readonly unknown[]): boolean {
  const state = client.getQueryState(key);
  if (!state) return true;
  return state.fetchStatus !== 'fetching' && state.data !== undefined;
}

/** Drops the fetch under way of the query at `key` (a first fetch is not restarted by
 * an invalidation: the invalidation would join it and take its stale answer) and
 * fetches it again. */
function fetchAgain(client: QueryClient, key: readonly unknown[]): void {
  void client
    .cancelQueries({ queryKey: key, exact: true })
    .then(() => client.invalidateQueries({ queryKey: key, exact: true }));
}

/** Applies one event to the cache. Exported for the tests of the console's logic. */
export function applyEvent(client: QueryClient, name: string, data: WorkerEvent): void {
  const id = data.serverId;
  switch (name) {
    case 'worker.status':
    case 'worker.removed': {
      const change = (workers: WorkerRecord[]) =>
        name === 'worker.status' && data.worker
          ? upsertWorker(workers, data.worker)
          : workers.filter((w) => w.replicaIdx !== data.replicaIdx);
      // A query whose fetch is under way answers with what Redis held when it was
      // read, which may be older than this event: written into the cache now, the
      // event would be overwritten by that answer (or, with no data yet, dropped),
      // and the page would show a stale status until the next event. Such a query is
      // fetched again instead (its answer then holds this change).
      if (!settled(client, ['runtime'])) {
        fetchAgain(client, ['runtime']);
      } else {
        client.setQueryData<ServerRuntime[]>(['runtime'], (old) => {
          if (!old) return old;
          const found = old.some((r) => r.serverId === id);
          const next = found
            ? old.map((r) => (r.serverId === id ? { ...r, workers: change(r.workers) } : r))
            : [...old, { serverId: id, workers: change([]) }];
          return next.filter((r) => r.workers.length > 0);
        });
      }
      if (!settled(client, ['runtime', id])) {
        fetchAgain(client, ['runtime', id]);
      } else {
        client.setQueryData<ServerRuntime>(['runtime', id], (old) =>
          old ? { ...old, workers: change(old.workers) } : old,
        );
      }
      break;
    }
    case 'server.upsert':
    case 'server.delete':
      if (name === 'server.delete') markDeleted(client, id);
      else deleted.delete(id);
      void client.invalidateQueries({ queryKey: ['servers'] });
      void client.invalidateQueries({ queryKey: ['server', id] });
      void client.invalidateQueries({ queryKey: ['stats'] });
      if (name === 'server.delete') void client.invalidateQueries({ queryKey: ['runtime'] });
      break;
    case 'tool.upsert':
    case 'tool.delete':
      void client.invalidateQueries({ queryKey: ['tools', id] });
      void client.invalidateQueries({ queryKey: ['servers'] });
      void client.invalidateQueries({ queryKey: ['server', id] });
      void client.invalidateQueries({ queryKey: ['stats'] });
      if (data.toolName) void client.invalidateQueries({ queryKey: ['tool', id, data.toolName] });
      break;
    default:
      break;
  }
}

/** The one stream of the page. Started by `<LiveEvents>`; stopped on unmount. */
export class EventStream {
  private controller: AbortController | null = null;
  private listeners = new Set<Listener>();
  state: LiveState = 'connecting';
  /** When each worker event reached the page (for the browser suite's timings). */
  lastEventAt = 0;

  constructor(private client: QueryClient) {}

  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    listener(this.state);
    return () => this.listeners.delete(listener);
  }

  private set(state: LiveState) {
    this.state = state;
    for (const listener of this.listeners) listener(state);
  }

  start() {
    this.stop();
    const controller = new AbortController();
    this.controller = controller;
    void this.loop(controller.signal);
  }

  stop() {
    this.controller?.abort();
    this.controller = null;
  }

  private async loop(signal: AbortSignal) {
    let delay = 250;
    while (!signal.aborted) {
      try {
        const response = await fetch(hubUrl('api/events'), {
          headers: { Accept: 'text/event-stream', ...authHeaders() },
          signal,
          cache: 'no-store',
        });
        if (response.status === 401) {
          this.set('unauthorized');
          window.dispatchEvent(new Event('mcp-hub:unauthorized'));
          return;
        }
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        await readSse(
          response,
          (event) => {
            if (event.event === 'reload') {
              this.set('live');
              delay = 250;
              void this.client.invalidateQueries();
              return;
            }
            try {
              const data = JSON.parse(event.data) as WorkerEvent;
              this.lastEventAt = performance.now();
              applyEvent(this.client, event.event, data);
            } catch {
              // A frame this console does not know: ignored.
            }
          },
          signal,
        );
      } catch {
        // Network error or abort: retried below unless stopped.
      }
      if (signal.aborted) return;
      this.set('reconnecting');
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 5000);
    }
  }
}

export function useLiveState(stream: EventStream | null): LiveState {
  const [state, setState] = useState<LiveState>('connecting');
  useEffect(() => (stream ? stream.subscribe(setState) : undefined), [stream]);
  return state;
}
