// Owns the query keys and fetchers of the console (TanStack Query); the event stream
// (events.ts) keeps them fresh, so nothing here polls except the metrics.

import { useQuery } from '@tanstack/react-query';
import { api, enc } from './api';
import { isDeleted } from './events';
import type { MetricsView, ServerRuntime, ServerView, Stats, ToolBinding } from './types';

export const useServers = () =>
  useQuery({ queryKey: ['servers'], queryFn: () => api.get<ServerView[]>('api/servers') });

export const useServer = (id: string) =>
  useQuery({
    queryKey: ['server', id],
    queryFn: () => api.get<ServerView>(`api/servers/${enc(id)}`),
    // A callback: read when a refetch is due, so a delete seen on the event stream
    // stops it even before the page re-renders.
    enabled: () => id !== '' && !isDeleted(id),
  });

export const useTools = (id: string, enabled = true) =>
  useQuery({
    queryKey: ['tools', id],
    queryFn: () => api.get<ToolBinding[]>(`api/tools/${enc(id)}`),
    enabled: () => enabled && id !== '' && !isDeleted(id),
  });

export const useTool = (id: string, tool: string, enabled = true) =>
  useQuery({
    queryKey: ['tool', id, tool],
    queryFn: () => api.get<ToolBinding>(`api/tools/${enc(id)}/${enc(tool)}`),
    enabled,
  });

export const useRuntime = () =>
  useQuery({ queryKey: ['runtime'], queryFn: () => api.get<ServerRuntime[]>('api/runtime') });

export const useStats = () => useQuery({ queryKey: ['stats'], queryFn: () => api.get<Stats>('api/stats') });

export const useMetrics = (intervalMs: number) =>
  useQuery({
    queryKey: ['metrics'],
    queryFn: () => api.get<MetricsView>('api/metrics'),
    refetchInterval: intervalMs,
    refetchIntervalInBackground: false,
  });
