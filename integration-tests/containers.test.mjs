// Logs, exec and attach through the gateway: real gateway, imagecache and node binaries, NATS,
// Postgres, the registry and runc. Nothing places groups yet (the scheduler is its own issue), so
// the test stands in for it: it hands the gateway's GroupCreated event to the node as a run.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID, randomBytes } from 'node:crypto';
import { spawn, spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect } from 'nats';
import WebSocket from 'ws';
import { startInfra, Gateway, request, groupPath, sleep } from './harness.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const build = process.env.SKIFF_BUILD_DIR ?? join(here, '../build/dev');
let infra, gw, token, nc, cache, node;
const sub = randomUUID();

before(async () => {
  infra = startInfra({ registry: true });
  infra.secretKey = randomBytes(32).toString('base64');
  gw = await new Gateway(infra).start();
  token = gw.createToken(sub);
  const common = { ...process.env, SKIFF_BUS_URL: infra.env.NATS_URL, SKIFF_LOG_LEVEL: 'warn' };
  cache = spawn(join(build, 'services/imagecache/skiff-imagecache'), ['serve'], {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...common, SKIFF_IMAGECACHE_ROOT: join(infra.dir, 'imagecache'), SKIFF_IMAGECACHE_NODE_ID: 'it-node',
      SKIFF_IMAGECACHE_SECRET_KEY: infra.secretKey },
  });
  node = spawn(join(build, 'services/node/skiff-node'), ['serve'], {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...common, SKIFF_NODE_ROOT: join(infra.dir, 'node'), SKIFF_NODE_NODE_ID: 'it-node',
      SKIFF_NODE_SECRET_KEY: infra.secretKey, SKIFF_NODE_STOP_GRACE_MS: '1000',
      SKIFF_NODE_SECCOMP_PROFILE: join(here, '../infra/seccomp/default.json') },
  });
  nc = await connect({ servers: infra.env.NATS_URL });
});

after(async () => {
  await nc?.close();
  for (const proc of [node, cache]) {
    if (proc && proc.exitCode === null) {
      proc.kill('SIGTERM');
      await new Promise((r) => proc.on('exit', r));
    }
  }
  await gw?.stop();
  spawnSync('sh', ['-c', `umount -l ${infra.dir}/imagecache/containers/*/rootfs 2>/dev/null; true`]);
  infra?.stop();
});

// Protobuf wire format, just enough to move a GroupRef and a spec from the event to the node.
function readVarint(buf, at) {
  let value = 0, shift = 0, byte;
  do {
    byte = buf[at++];
    value += (byte & 0x7f) * 2 ** shift;
    shift += 7;
  } while (byte & 0x80);
  return [value, at];
}
function fields(buf) {
  const out = new Map();
  for (let at = 0; at < buf.length;) {
    let key;
    [key, at] = readVarint(buf, at);
    const type = key & 7;
    if (type === 2) {
      let length;
      [length, at] = readVarint(buf, at);
      out.set(key >> 3, buf.subarray(at, at + length));
      at += length;
    } else if (type === 0) {
      [, at] = readVarint(buf, at);
    } else if (type === 1) at += 8;
    else if (type === 5) at += 4;
  }
  return out;
}
function varint(n) {
  const bytes = [];
  while (n > 0x7f) { bytes.push((n & 0x7f) | 0x80); n = Math.floor(n / 128); }
  bytes.push(n);
  return Buffer.from(bytes);
}
const field = (number, bytes) => Buffer.concat([varint((number << 3) | 2), varint(bytes.length), bytes]);

// The scheduler's part: the latest GroupCreated for `name`, run on the node.
async function place(name) {
  const jsm = await nc.jetstreamManager();
  for (let attempt = 0; attempt < 100; attempt++) {
    const info = await jsm.streams.info('SKIFF_EVENTS');
    for (let seq = info.state.last_seq; seq >= info.state.first_seq && info.state.messages > 0; seq--) {
      const m = await jsm.streams.getMessage('SKIFF_EVENTS', { seq }).catch(() => null);
      if (!m || m.subject !== 'skiff.events.group.created') continue;
      const event = fields(Buffer.from(m.data));
      const ref = event.get(4);
      if (Buffer.from(fields(ref).get(3) ?? []).toString() !== name) continue;
      const spec = fields(event.get(10)).get(1);
      let reply;
      for (let tries = 0; !reply; tries++) {  // the node may still be starting: no responders yet
        reply = await nc.request('skiff.node.it-node.run', Buffer.concat([field(1, ref), field(2, spec)]),
          { timeout: 120000 }).catch((e) => { if (tries > 100) throw e; return sleep(100).then(() => null); });
      }
      return { ref, ok: reply.data.length > 0 && reply.data[0] === 0x08 && reply.data[1] === 1 };
    }
    await sleep(100);
  }
  throw new Error(`no GroupCreated event for ${name}`);
}

const containerPath = (name, container, verb) =>
  groupPath(sub, 'rg-c', name).replace('?', `/containers/${container}/${verb}?`);

// Opens the socket an exec/attach answer names, sends the password, collects until closed.
function stream(answer, { password = answer.password, send = [], until } = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(answer.webSocketUri, { rejectUnauthorized: false });
    let output = '';
    let sent = false;
    ws.on('open', () => ws.send(password));
    ws.on('message', (data) => {
      output += data.toString();
      if (!sent) {
        sent = true;
        for (const s of send) ws.send(s);
      }
      if (until && output.includes(until)) ws.close();
    });
    ws.on('close', (code, reason) => resolve({ output, code, reason: reason.toString() }));
    ws.on('error', reject);
  });
}

test('logs, exec and attach of a running group through the gateway', async () => {
  const body = {
    location: 'local',
    properties: {
      osType: 'Linux', restartPolicy: 'Always',
      containers: [{ name: 'app', properties: {
        image: `${infra.env.REGISTRY}/skiff/sleeper:1`,
        command: ['/bin/sh', '-c', 'echo hello-from-container; echo second line; while true; do sleep 1; done'],
        resources: { requests: { cpu: 0.25, memoryInGB: 0.3 } } } }],
    },
  };
  const put = await request(gw, 'PUT', groupPath(sub, 'rg-c', 'streams'), { token, body });
  assert.equal(put.status, 201, JSON.stringify(put.json));

  // Not on a node yet: logs say so.
  const early = await request(gw, 'GET', containerPath('streams', 'app', 'logs'), { token });
  assert.equal(early.status, 409);
  assert.equal(early.json.error.code, 'ContainerGroupNotRunning');

  const placed = await place('streams');
  assert.ok(placed.ok, 'the node took the group');

  let logs;
  for (let i = 0; i < 100; i++) {
    logs = await request(gw, 'GET', `${containerPath('streams', 'app', 'logs')}&tail=1`, { token });
    if (logs.status === 200 && logs.json.content === 'second line\n') break;
    await sleep(200);
  }
  assert.equal(logs.status, 200, logs.body);
  assert.equal(logs.json.content, 'second line\n');
  const stamped = await request(gw, 'GET', `${containerPath('streams', 'app', 'logs')}&timestamps=true`, { token });
  assert.match(stamped.json.content, /^\d{4}-\d\d-\d\dT[0-9:.]+Z hello-from-container\n/);

  // exec with a terminal, as `az container exec` does: a shell, a line typed, its exit code.
  const exec = await request(gw, 'POST', containerPath('streams', 'app', 'exec'),
    { token, body: { command: '/bin/sh', terminalSize: { rows: 24, cols: 80 } } });
  assert.equal(exec.status, 200, exec.body);
  assert.match(exec.json.webSocketUri, /^wss:\/\/127\.0\.0\.1:\d+\/skiff\/streams\//);
  const shell = await stream(exec.json, { send: ['echo marker-$((6*7)); hostname\r', 'exit 5\r'] });
  assert.match(shell.output, /marker-42/);
  assert.match(shell.output, /streams/);  // the group's hostname
  assert.equal(shell.code, 1000);
  assert.equal(shell.reason, 'exit code 5');

  // The ticket is single-use, and a wrong password is refused before anything runs.
  await assert.rejects(stream(exec.json), /404/);
  const again = await request(gw, 'POST', containerPath('streams', 'app', 'exec'),
    { token, body: { command: '/bin/sh' } });
  const refused = await stream(again.json, { password: 'guess' });
  assert.equal(refused.code, 1008);

  // attach: the container's output from the start, live.
  const attach = await request(gw, 'POST', containerPath('streams', 'app', 'attach'), { token });
  assert.equal(attach.status, 200, attach.body);
  const attached = await stream(attach.json, { until: 'second line' });
  assert.match(attached.output, /hello-from-container\nsecond line/);

  // Another tenant sees nothing.
  const other = gw.createToken(randomUUID());
  const foreign = await request(gw, 'GET', containerPath('streams', 'app', 'logs'), { token: other });
  assert.equal(foreign.status, 404);

  // Deleting on the node releases the sandbox and the image mount: logs then find no node.
  await nc.request('skiff.node.it-node.delete', field(1, placed.ref), { timeout: 30000 });
  let gone = false;
  for (let i = 0; i < 100 && !gone; i++) {
    await sleep(200);
    gone = (await request(gw, 'GET', containerPath('streams', 'app', 'logs'), { token })).status === 409;
  }
  assert.ok(gone, 'the node let go of the group');
});
