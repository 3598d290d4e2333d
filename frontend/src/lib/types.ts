// The admin API's and the gateway's wire shapes the console reads (camelCase JSON,
// as documented in the README and /api/openapi.json).

export type AuthType = 'none' | 'bearer' | 'header' | 'query';

export interface Auth {
  type: AuthType;
  key?: string;
  /** Always `********` when the API returns it. */
  value?: string;
}

export interface ServerConfig {
  name: string;
  baseUrl: string;
  auth: Auth;
  defaultHeaders?: Record<string, string>;
  active: boolean;
  timeoutMs?: number;
  replicas?: number;
  retry?: Record<string, unknown>;
  circuitBreaker?: CircuitBreakerConfig;
  audit?: { includeArguments?: boolean };
}

/** core::model::CircuitBreakerConfig: every field optional, the API's defaults fill in. */
export interface CircuitBreakerConfig {
  failureThreshold?: number;
  coolDownMs?: number;
  /** 1-100; absent: the error-rate rule is off. */
  errorRatePercent?: number;
  /** 100-600000 (default 10000); only with `errorRatePercent`. */
  windowMs?: number;
  /** 1-100000 (default 20); only with `errorRatePercent`. */
  minCalls?: number;
}

export interface ServerView extends ServerConfig {
  id: string;
  toolCount: number;
}

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface ParamMapping {
  path?: Record<string, string>;
  query?: Record<string, string>;
  headers?: Record<string, string>;
  body?: Record<string, string>;
  rawBody?: string;
}

export interface ToolBinding {
  name: string;
  description: string;
  method: HttpMethod;
  pathTemplate: string;
  paramMapping: ParamMapping;
  inputSchema: JsonSchema;
  responseMapping?: { pick?: string };
  active: boolean;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type JsonSchema = Record<string, any>;

export type WorkerStatus =
  | 'pending'
  | 'starting'
  | 'running'
  | 'unhealthy'
  | 'restarting'
  | 'stopping'
  | 'stopped'
  | 'failed'
  | 'idle';

export interface WorkerRecord {
  replicaIdx: number;
  status: WorkerStatus;
  pid?: number;
  host?: string;
  port?: number;
  lastHeartbeat?: number;
  supervisorId?: string;
  restarts: number;
  reason?: string;
  lastFailure?: string;
  lastFailureAt?: number;
  startedAt?: number;
  updatedAt: number;
  /** The worker's circuit breaker and retry counters (absent until a guarded call). */
  resilience?: Resilience;
}

export type BreakerState = 'closed' | 'open' | 'half_open';

/** Why a breaker opened (core::runtime::BreakerOpenReason). */
export type BreakerOpenReason =
  | { kind: 'consecutive_failures' }
  | { kind: 'error_rate'; failed: number; calls: number }
  | { kind: 'probe_failed' };

export interface Resilience {
  state: BreakerState;
  consecutiveFailures: number;
  retries: number;
  retriesRefusedByBudget: number;
  rejected: number;
  opened: number;
  /** Why it last opened, while it is open or half-open (absent while closed). */
  openedBy?: BreakerOpenReason;
}

export interface ServerRuntime {
  serverId: string;
  workers: WorkerRecord[];
}

export interface Stats {
  servers: number;
  activeServers: number;
  tools: number;
  activeTools: number;
}

export interface Counts {
  requests: number;
  calls: number;
  errors: number;
}

export interface ServerMetrics extends Counts {
  serverId: string;
  errorsByCode: Record<string, number>;
  latency: { count: number; meanMs?: number; p50Ms?: number; p95Ms?: number; p99Ms?: number };
}

export interface MetricsView {
  available: boolean;
  source: string;
  scrapedAt: number;
  error?: string;
  totals: Counts;
  servers: ServerMetrics[];
}

export interface Problem {
  field: string;
  message: string;
}

export interface RegistryDocument {
  format?: string;
  version?: number;
  servers: Record<string, ServerConfig>;
  tools: Record<string, Record<string, ToolBinding>>;
}

export interface ImportSummary {
  servers: number;
  tools: number;
  removedServers: number;
  removedTools: number;
}
