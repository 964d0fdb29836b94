// Logs, exec and attach through the gateway: real gateway, scheduler, imagecache and node
// binaries, NATS, Postgres, the registry and runc.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID, randomBytes } from 'node:crypto';
import { spawn, spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { startInfra, Gateway, request, groupPath, sleep } from './harness.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const build = process.env.SKIFF_BUILD_DIR ?? join(here, '../build/dev');
let infra, gw, token, cache, node, scheduler;
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
});

after(async () => {
  for (const proc of [scheduler, node, cache]) {
    if (proc && proc.exitCode === null) {
      proc.kill('SIGTERM');
      await new Promise((r) => proc.on('exit', r));
    }
  }
  await gw?.stop();
  spawnSync('sh', ['-c', `umount -l ${infra.dir}/imagecache/containers/*/rootfs 2>/dev/null; true`]);
  infra?.stop();
});

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

  // Not on a node yet (no scheduler runs so far): logs say so.
  const early = await request(gw, 'GET', containerPath('streams', 'app', 'logs'), { token });
  assert.equal(early.status, 409);
  assert.equal(early.json.error.code, 'ContainerGroupNotRunning');

  // Now the scheduler: it takes the GroupCreated from its durable consumer and places the group
  // on the only node.
  scheduler = spawn(join(build, 'services/scheduler/skiff-scheduler'), ['serve'], {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, SKIFF_BUS_URL: infra.env.NATS_URL, SKIFF_STORE_URL: infra.env.STORE_URL,
      SKIFF_LOG_LEVEL: 'warn' },
  });

  let logs;
  for (let i = 0; i < 100; i++) {
    logs = await request(gw, 'GET', `${containerPath('streams', 'app', 'logs')}&tail=1`, { token });
    if (logs.status === 200 && logs.json.content === 'second line\n') break;
    await sleep(200);
  }
  assert.equal(logs.status, 200, logs.body);
  assert.equal(logs.json.content, 'second line\n');
  // The gateway's read model followed the scheduler's and the node's events: GET shows the
  // group running, with its containers' states and events, and the create operation is done.
  let view;
  for (let i = 0; i < 50; i++) {
    view = await request(gw, 'GET', groupPath(sub, 'rg-c', 'streams'), { token });
    if (view.json.properties.instanceView?.state === 'Running') break;
    await sleep(200);
  }
  assert.equal(view.json.properties.provisioningState, 'Succeeded', view.body);
  assert.equal(view.json.properties.instanceView.state, 'Running');
  assert.ok(view.json.properties.instanceView.events.some((e) => e.name === 'Placed'), view.body);
  const app = view.json.properties.containers[0].properties.instanceView;
  assert.equal(app.currentState.state, 'Running', view.body);
  assert.equal(app.restartCount, 0);
  assert.deepEqual(app.events.map((e) => e.name).filter((n) => n === 'Pulling' || n === 'Started'), ['Pulling', 'Started']);
  const operation = await request(gw, 'GET', new URL(put.headers['azure-asyncoperation']).pathname +
    new URL(put.headers['azure-asyncoperation']).search, { token });
  assert.equal(operation.json.status, 'Succeeded', operation.body);

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

  // DELETE goes gateway -> scheduler -> node, which stops the container and releases the
  // sandbox and the image mount.
  assert.equal((await request(gw, 'DELETE', groupPath(sub, 'rg-c', 'streams'), { token })).status, 202);
  let gone = false;
  for (let i = 0; i < 100 && !gone; i++) {
    await sleep(200);
    const list = spawnSync('runc', ['--root', join(infra.dir, 'node/runc'), 'list', '-q']).stdout.toString().trim();
    const mounted = spawnSync('sh', ['-c', `grep -c ${infra.dir}/imagecache/containers /proc/mounts`]).stdout.toString().trim();
    gone = list === '' && mounted === '0';
  }
  assert.ok(gone, 'the node let go of the group');
  assert.equal((await request(gw, 'GET', containerPath('streams', 'app', 'logs'), { token })).status, 404);
});
