// Every accepted change puts exactly one event on JetStream, even when NATS is down while the
// change is made and the gateway (with its outbox relay) is killed before it could publish.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { spawn } from 'node:child_process';
import { appendFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from 'nats';
import { gatewayStack, request, groupPath, helloGroup, sleep } from './harness.mjs';

const stack = gatewayStack();
let infra, gw, token, sub;
before(async () => ({ infra, gw, token, sub } = await stack.start()));
after(() => stack.stop());

// Reads the whole stream: subject, Nats-Msg-Id and payload of every message.
async function readStream() {
  const nc = await connect({ servers: infra.env.NATS_URL });
  try {
    const jsm = await nc.jetstreamManager();
    const info = await jsm.streams.info('SKIFF_EVENTS');
    const messages = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
      const m = await jsm.streams.getMessage('SKIFF_EVENTS', { seq });
      messages.push({ subject: m.subject, id: m.header.get('Nats-Msg-Id'), data: Buffer.from(m.data) });
    }
    return messages;
  } finally {
    await nc.close();
  }
}

async function waitForCount(n, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  let messages = [];
  while (Date.now() < deadline) {
    messages = await readStream();
    if (messages.length >= n) break;
    await sleep(200);
  }
  return messages;
}

const natsPids = () => readFileSync(join(infra.dir, 'pids'), 'utf8').trim().split('\n').map(Number);

test('one event per change, in order', async () => {
  const start = (await readStream()).length;
  await request(gw, 'PUT', groupPath(sub, 'rg-ev', 'a'), { token, body: helloGroup() });
  await request(gw, 'PATCH', groupPath(sub, 'rg-ev', 'a'), { token, body: { tags: { x: 'y' } } });
  await request(gw, 'DELETE', groupPath(sub, 'rg-ev', 'a'), { token });
  const messages = (await waitForCount(start + 3)).slice(start);
  assert.deepEqual(messages.map((m) => m.subject),
    ['skiff.events.group.created', 'skiff.events.group.updated', 'skiff.events.group.deleted']);
  assert.equal(new Set(messages.map((m) => m.id)).size, 3);
  await sleep(500);
  assert.equal((await readStream()).length, start + 3, 'no extra events');
  assert.ok(!messages.some((m) => m.data.includes(Buffer.from('do-not-leak-42'))), 'secrets travel sealed');
});

test('changes made while NATS is down reach the stream once after the relay is killed and restarted', async () => {
  const start = (await readStream()).length;
  const natsPid = natsPids()[0];
  process.kill(natsPid, 'SIGKILL');
  await sleep(300);

  // Postgres is the source of truth: the API keeps accepting changes while NATS is away.
  const names = Array.from({ length: 20 }, (_, i) => `offline-${String(i).padStart(2, '0')}`);
  for (const name of names) {
    const r = await request(gw, 'PUT', groupPath(sub, 'rg-offline', name), { token, body: helloGroup() });
    assert.equal(r.status, 201, r.body);
  }
  await gw.stop('SIGKILL');  // the relay dies with its outbox unpublished

  const nats = spawn('nats-server', ['-js', '-a', '127.0.0.1', '-p', infra.env.NATS_PORT, '-sd', join(infra.env.NATS_DIR, 'jetstream')],
    { stdio: 'ignore', detached: true });
  appendFileSync(join(infra.dir, 'pids'), `${nats.pid}\n`);
  await sleep(500);
  await gw.start();

  const messages = (await waitForCount(start + names.length)).slice(start);
  await sleep(1000);
  const final = (await readStream()).slice(start);
  assert.equal(final.length, names.length, 'each change exactly once');
  assert.equal(new Set(final.map((m) => m.id)).size, names.length);
  for (const name of names) {
    assert.equal(final.filter((m) => m.data.includes(Buffer.from(name))).length, 1, name);
  }
  assert.ok(messages.every((m) => m.subject === 'skiff.events.group.created'));
});

test('a relay that publishes an event again is deduplicated by Nats-Msg-Id', async () => {
  const before = await readStream();
  const last = before[before.length - 1];
  const nc = await connect({ servers: infra.env.NATS_URL });
  const ack = await nc.jetstream().publish(last.subject, last.data, { msgID: last.id });
  await nc.close();
  assert.equal(ack.duplicate, true);
  assert.equal((await readStream()).length, before.length);
});
