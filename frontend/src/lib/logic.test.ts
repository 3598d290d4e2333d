// Unit tests of the console's pure logic (node's test runner through tsx:
// `npm run test:unit`, part of `npm run check` and make test).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SseParser } from './sse.ts';
import { pointerTokens } from './validator.ts';
import { breakerOpenedBy, breakerRule, serverState } from './status.ts';
import type { ServerRuntime, ServerView, WorkerRecord } from './types.ts';
import { QueryClient, QueryObserver } from '@tanstack/react-query';
import { applyEvent } from './events.ts';
import { isCredentialHeader } from './secrets.ts';

test('SSE frames split anywhere, with any line end', () => {
  const text = 'event: tool_call.started\r\ndata: {"a":1}\r\n\r\n: comment\n\nevent: output.delta\rdata: x\rdata: y\r\r';
  for (let cut = 0; cut <= text.length; cut++) {
    const parser = new SseParser();
    const events = [...parser.push(text.slice(0, cut)), ...parser.push(text.slice(cut))];
    assert.deepEqual(
      events.map((e) => [e.event, e.data]),
      [
        ['tool_call.started', '{"a":1}'],
        ['output.delta', 'x\ny'],
      ],
      `cut at ${cut}`,
    );
  }
});

test('an event without a name is a message; id is kept', () => {
  const events = new SseParser().push('id: 7\ndata: hi\n\n');
  assert.deepEqual(events, [{ event: 'message', data: 'hi', id: '7' }]);
});

test('JSON pointers become field paths', () => {
  assert.deepEqual(pointerTokens(''), []);
  assert.deepEqual(pointerTokens('/id'), ['id']);
  assert.deepEqual(pointerTokens('/a/0/b~1c~0d'), ['a', '0', 'b/c~d']);
  assert.deepEqual(pointerTokens('#/x'), ['x']);
});

const server = (over: Partial<ServerView> = {}): ServerView => ({
  id: 's',
  name: 's',
  baseUrl: 'http://x',
  auth: { type: 'none' },
  active: true,
  toolCount: 0,
  ...over,
});
const worker = (replicaIdx: number, status: WorkerRecord['status'], restarts = 0): WorkerRecord => ({
  replicaIdx,
  status,
  restarts,
  port: 9100 + replicaIdx,
  updatedAt: 0,
});

test('a server shows its worst replica, running of desired, and the restarts', () => {
  assert.deepEqual(serverState(server({ replicas: 2 }), [worker(0, 'running', 1), worker(1, 'restarting', 2)]), {
    status: 'restarting',
    running: 1,
    desired: 2,
    restarts: 3,
    ports: ['9100', '9101'],
  });
  assert.equal(serverState(server(), []).status, 'none');
  assert.equal(serverState(server({ active: false }), []).status, 'inactive');
  assert.equal(serverState(server({ active: false }), [worker(0, 'stopped')]).status, 'inactive');
  assert.equal(serverState(server(), [worker(0, 'idle')]).status, 'idle');
});

test('a worker event that arrives while the runtime is being fetched refetches it', async () => {
  const client = new QueryClient();
  const stale: ServerRuntime = { serverId: 's', workers: [worker(0, 'starting')] };
  const fresh: ServerRuntime = { serverId: 's', workers: [worker(0, 'running')] };
  let calls = 0;
  let release: () => void = () => {};
  const held = new Promise<void>((resolve) => (release = resolve));
  const observer = new QueryObserver<ServerRuntime>(client, {
    queryKey: ['runtime', 's'],
    queryFn: async () => {
      calls += 1;
      if (calls === 1) {
        // The first answer was read from Redis before the worker became running.
        await held;
        return stale;
      }
      return fresh;
    },
  });
  const unsubscribe = observer.subscribe(() => {});
  try {
    // The event of the change arrives while the first answer is on its way.
    applyEvent(client, 'worker.status', { type: 'worker.status', version: 2, serverId: 's', worker: fresh.workers[0] });
    release();
    const deadline = Date.now() + 5000;
    while (client.getQueryData<ServerRuntime>(['runtime', 's'])?.workers[0]?.status !== 'running') {
      assert.ok(Date.now() < deadline, `still ${JSON.stringify(client.getQueryData(['runtime', 's']))}`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    assert.equal(calls, 2);
    // Once settled, an event is written into the cache without a fetch.
    applyEvent(client, 'worker.status', { type: 'worker.status', version: 3, serverId: 's', worker: worker(0, 'unhealthy') });
    assert.equal(client.getQueryData<ServerRuntime>(['runtime', 's'])?.workers[0]?.status, 'unhealthy');
    assert.equal(calls, 2);
  } finally {
    unsubscribe();
    client.clear();
  }
});

test('credential-named headers follow the admin API\'s rule (core is_credential_header)', () => {
  for (const name of ['Authorization', 'proxy-authorization', 'Cookie', 'X-Api-Key', 'Ocp-Apim-Subscription-Key', 'X-Auth-Token', 'X-Client-Secret', 'X-Password', 'X-Session-Id', 'X-Signature', 'X-Credential', 'monkey'])
    assert.equal(isCredentialHeader(name), true, name);
  for (const name of ['Accept', 'X-Team', 'Content-Type', 'X-Keys', 'User-Agent', 'Cookies'])
    assert.equal(isCredentialHeader(name), false, name);
});

test('a breaker\'s rule in words, the defaults filled in', () => {
  assert.equal(breakerRule({}), 'opens after 5 failures in a row; one probe after 30.00 s open');
  assert.equal(
    breakerRule({ failureThreshold: 1, coolDownMs: 600000, errorRatePercent: 50, windowMs: 5000, minCalls: 1 }),
    'opens after 1 failure in a row or when 50% of at least 1 attempt in 5.00 s failed; one probe after 600.00 s open',
  );
  assert.equal(breakerRule({ errorRatePercent: 25 }), 'opens after 5 failures in a row or when 25% of at least 20 attempts in 10.00 s failed; one probe after 30.00 s open');
});

test('why a breaker opened, in words', () => {
  assert.equal(breakerOpenedBy({ openedBy: { kind: 'consecutive_failures' } }), 'opened by failures in a row');
  assert.equal(breakerOpenedBy({ openedBy: { kind: 'error_rate', failed: 6, calls: 10 } }), 'opened: 6 of 10 calls failed (60%)');
  assert.equal(breakerOpenedBy({ openedBy: { kind: 'error_rate', failed: 1, calls: 1 } }), 'opened: 1 of 1 call failed (100%)');
  assert.equal(breakerOpenedBy({ openedBy: { kind: 'error_rate', failed: 1, calls: 3 } }), 'opened: 1 of 3 calls failed (33%)');
  assert.equal(breakerOpenedBy({ openedBy: { kind: 'probe_failed' } }), 'reopened: the half-open probe failed');
  // Closed, or a record of an older worker: nothing said.
  assert.equal(breakerOpenedBy({}), undefined);
});
