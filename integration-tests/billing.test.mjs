// Billing end to end: real gateway, scheduler, node (runc), imagecache, billing, NATS and
// Postgres. Groups run for known times; billing is SIGKILLed mid-stream and restarted; the billed
// seconds must equal the true running time within 1 s per interval, with no event counted twice.
// Also the usage and cost APIs, the public usage stream, and /metrics.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID, randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import http from 'node:http';
import { startInfra, Gateway, request, groupPath, sleep, until, serviceKit } from './harness.mjs';

let infra, gw, kit, token, metricsPort;
const sub = randomUUID();
const api = (path) => `/subscriptions/${sub}/${path}`;

const freePort = () => new Promise((resolve) => {
  const server = createServer().listen(0, '127.0.0.1', () => {
    const { port } = server.address();
    server.close(() => resolve(port));
  });
});

const scrape = (port) => new Promise((resolve, reject) => {
  http.get({ host: '127.0.0.1', port, path: '/metrics' }, (res) => {
    let text = '';
    res.on('data', (c) => { text += c; });
    res.on('end', () => resolve(text));
  }).on('error', reject);
});

function startBilling() {
  return kit.spawn('billing', 'services/billing/skiff-billing', {
    SKIFF_METRICS_LISTEN: `127.0.0.1:${metricsPort}`, SKIFF_BILLING_TICK_MS: '200', SKIFF_BILLING_LIVE_MS: '500',
  });
}

// Epoch ms at which the group's container was first seen running (polled every 50 ms).
async function startedAt(groupId) {
  for (const deadline = Date.now() + 60000; Date.now() < deadline; await sleep(50)) {
    if (kit.running('bl-a').includes(groupId)) return Date.now();
  }
  throw new Error(`group ${groupId} never ran`);
}

async function deleteAndWait(name, groupId) {
  const requested = Date.now();
  const r = await request(gw, 'DELETE', groupPath(sub, 'rg', name), { token });
  assert.equal(r.status, 202, r.body);
  for (const deadline = Date.now() + 30000; kit.running('bl-a').includes(groupId); await sleep(50)) {
    if (Date.now() > deadline) throw new Error(`group ${groupId} kept running`);
  }
  return { requested, gone: Date.now() };
}

before(async () => {
  infra = startInfra({ registry: true });
  infra.secretKey = randomBytes(32).toString('base64');
  kit = serviceKit(infra);
  metricsPort = await freePort();
  gw = await new Gateway(infra).start();
  token = gw.createToken(sub);
  kit.startScheduler('scheduler');
  kit.startNode('bl-a', 2, { SKIFF_NODE_USAGE_MS: '1000' });
  startBilling();
  await kit.nodeRegistered('bl-a');
});

after(async () => {
  await kit?.stopAll();
  await gw?.stop();
  kit?.cleanNodes(['bl-a']);
  infra?.stop();
});

test('billed seconds match the running time across a billing crash, each event counted once', async () => {
  const put = async (name, cpu, memoryInGB) => {
    const r = await request(gw, 'PUT', groupPath(sub, 'rg', name), { token, body: kit.sleeperGroup({ cpu, memoryInGB }) });
    assert.equal(r.status, 201, r.body);
    return kit.sql(`SELECT group_id FROM gateway.container_groups WHERE name = '${name}'`);
  };
  const a = await put('meter-a', 1, 1);
  const b = await put('meter-b', 0.5, 0.5);
  const [startA, startB] = await Promise.all([startedAt(a), startedAt(b)]);

  // While both run: ACI's metrics endpoint has the containers' memory from the node's reports.
  await sleep(2500);
  const metrics = await request(gw, 'GET', `${groupPath(sub, 'rg', 'meter-a', '2018-01-01')}`.replace(
    '?api-version=2018-01-01', '/providers/microsoft.Insights/metrics?api-version=2018-01-01&metricnames=MemoryUsage&timespan=PT10M'), { token });
  assert.equal(metrics.status, 200, metrics.body);
  const memory = metrics.json.value[0].timeseries[0].data.filter((d) => d.average !== undefined);
  assert.ok(memory.length > 0 && memory[0].average > 0, metrics.body);

  // Billing dies without warning; A is deleted while it is down; it comes back and catches up.
  await kit.stop('billing', 'SIGKILL');
  await sleep(1000);
  const endA = await deleteAndWait('meter-a', a);
  startBilling();
  await sleep(2000);
  const endB = await deleteAndWait('meter-b', b);

  const intervals = await until('both intervals billed', () => {
    if (kit.procs.billing.exitCode !== null) throw new Error(`billing exited with ${kit.procs.billing.exitCode}`);
    const rows = kit.sql(`SELECT group_id, end_ms - start_ms, end_reason FROM billing.intervals WHERE group_id IN ('${a}', '${b}') ORDER BY group_id`);
    return rows.split('\n').filter(Boolean).length === 2 && rows;
  }, 30000);
  for (const [id, start, end] of [[a, startA, endA], [b, startB, endB]]) {
    const rows = intervals.split('\n').filter((r) => r.startsWith(id));
    assert.equal(rows.length, 1, `exactly one interval for ${id}: ${intervals}`);
    const billed = Number(rows[0].split('|')[1]);
    console.log(`group ${id}: billed ${billed} ms, ran ${end.requested - start}..${end.gone - start} ms`);
    // Truly running from (about) first seen to between the delete request and the container's end.
    assert.ok(billed >= end.requested - start - 1000 && billed <= end.gone - start + 1000,
      `billed ${billed} ms; ran ${end.requested - start}..${end.gone - start} ms`);
  }
  // No event was applied twice: no id is in two checkpoints, and each group's meter agrees with
  // its one interval.
  // (each row holds its ids' 16 bytes back to back)
  assert.equal(kit.sql('SELECT count(*) - count(DISTINCT id) FROM (SELECT substring(event_ids FROM g FOR 16) AS id ' +
    'FROM billing.processed_batches, generate_series(1, length(event_ids), 16) AS g) ids'), '0');
  assert.ok(Number(kit.sql('SELECT sum(length(event_ids)) / 16 FROM billing.processed_batches')) >= 6, 'the events were recorded');
  assert.equal(kit.sql(`SELECT count(*) FROM billing.meters WHERE group_id IN ('${a}', '${b}') AND open_since_ms IS NULL`), '2');

  // The usage records reached the public stream through billing's usage relay.
  await until('usage records published', () =>
    kit.sql(`SELECT count(*) FROM billing.intervals i, billing.usage_relay r WHERE i.group_id IN ('${a}', '${b}') AND i.id <= r.published_through`) === '2');

  // The cost view agrees, as JSON and as CSV.
  const costs = await request(gw, 'GET', api('providers/Skiff.Billing/costs?api-version=2023-05-01&groupBy=group'), { token });
  assert.equal(costs.status, 200, costs.body);
  assert.equal(costs.json.lines.length, 2);
  const lineA = costs.json.lines.find((l) => l.groupName === 'meter-a');
  const billedA = Number(intervals.split('\n').find((r) => r.startsWith(a)).split('|')[1]) / 1000;
  assert.ok(Math.abs(lineA.seconds - billedA) < 0.01);
  assert.ok(Math.abs(lineA.vcpuSeconds - billedA) < 0.01);
  assert.ok(Math.abs(lineA.cost - billedA * (0.0000135 + 0.0000015)) < 1e-9, JSON.stringify(lineA));
  assert.equal(costs.json.currency, 'USD');
  const csv = await request(gw, 'GET', api('resourceGroups/rg/providers/Skiff.Billing/costs?api-version=2023-05-01&groupBy=interval&format=csv'), { token });
  assert.equal(csv.status, 200);
  const csvLines = csv.body.trim().split('\n');
  assert.equal(csvLines.length, 3);
  assert.match(csvLines[0], /^subscriptionId,resourceGroup,groupName,groupId,priority,startedAt,endedAt,seconds/);
  const bad = await request(gw, 'GET', api('providers/Skiff.Billing/costs?api-version=2023-05-01&groupBy=weekday'), { token });
  assert.equal(bad.status, 400);
  assert.match(bad.json.error.message, /groupBy 'weekday'/);

  // Usage against quota: both groups are gone.
  const usages = await request(gw, 'GET', api('providers/Microsoft.ContainerInstance/locations/local/usages?api-version=2023-05-01'), { token });
  assert.equal(usages.status, 200);
  assert.equal(usages.json.value.find((u) => u.name.value === 'ContainerGroups').currentValue, 0);

  // Billing's metrics: what it consumed, and no lag now.
  const text = await scrape(metricsPort);
  assert.match(text, /skiff_billing_events_total\{result="applied"\} [1-9]/);
  assert.match(text, /skiff_billing_lag_messages 0/);
});

test('a stopped group is not billed while stopped; stop, start and restart through the API', async () => {
  const r = await request(gw, 'PUT', groupPath(sub, 'rg', 'pausable'), { token, body: kit.sleeperGroup({ cpu: 0.5 }) });
  assert.equal(r.status, 201, r.body);
  const id = kit.sql("SELECT group_id FROM gateway.container_groups WHERE name = 'pausable'");
  const command = (verb) => request(gw, 'POST', groupPath(sub, 'rg', 'pausable').replace('?', `/${verb}?`), { token });
  const first = await startedAt(id);
  // The read model knows the group's node once it is placed: the commands need it.
  await until('group placed in the read model', () => kit.sql(`SELECT count(*) FROM gateway.group_runtime WHERE group_id = '${id}' AND node_id <> ''`) === '1');
  await sleep(1500);
  const stopRequested = Date.now();
  assert.equal((await command('stop')).status, 204);
  await until('stopped', () => !kit.running('bl-a').includes(id));
  const stopped = Date.now();
  let view;
  for (let i = 0; i < 50; i++) {
    view = await request(gw, 'GET', groupPath(sub, 'rg', 'pausable'), { token });
    if (view.json.properties.instanceView?.state === 'Stopped') break;
    await sleep(100);
  }
  assert.equal(view.json.properties.instanceView.state, 'Stopped', view.body);
  await sleep(3000);  // stopped: not billed
  assert.equal((await command('start')).status, 204);
  const second = await startedAt(id);
  await sleep(1000);
  assert.equal((await command('restart')).status, 204);
  await until('running after restart', () => kit.running('bl-a').includes(id), 30000);
  await sleep(1000);
  const end = await deleteAndWait('pausable', id);
  const rows = await until('intervals billed', () => {
    const out = kit.sql(`SELECT end_ms - start_ms, end_reason FROM billing.intervals WHERE group_id = '${id}' ORDER BY start_ms`);
    return out.split('\n').filter(Boolean).length >= 2 && !kit.sql(`SELECT open_since_ms FROM billing.meters WHERE group_id = '${id}'`) && out;
  }, 30000);
  const billed = rows.split('\n').reduce((sum, row) => sum + Number(row.split('|')[0]), 0);
  const ranLow = (stopRequested - first) + (end.requested - second) - 2000;  // a restart may pause it briefly
  const ranHigh = (stopped - first) + (end.gone - second) + 1000;
  console.log(`pausable: billed ${billed} ms in ${rows.split('\n').length} intervals; ran ${ranLow}..${ranHigh} ms; stopped ${second - stopped} ms`);
  assert.ok(billed >= ranLow && billed <= ranHigh, `billed ${billed} ms, ran ${ranLow}..${ranHigh} ms`);
  assert.ok(billed < end.gone - first - 2500, 'the stopped seconds were not billed');
  assert.equal(rows.split('\n')[0].split('|')[1], 'Stopped');
  // Commands on a group that is gone are 404; on one never placed, 409.
  assert.equal((await command('stop')).status, 404);
});

test('a second billing stands by while one is active, and takes over when it dies', async () => {
  kit.spawn('billing-standby', 'services/billing/skiff-billing', { SKIFF_METRICS_LISTEN: '', SKIFF_BILLING_TICK_MS: '200' });
  const lockHolders = () => kit.sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted " +
    "AND objid::bigint = (hashtext('skiff.billing')::bigint & 4294967295)");
  await sleep(2000);
  assert.equal(kit.procs['billing-standby'].exitCode, null, 'the standby waits');
  assert.equal(lockHolders(), '1');
  await kit.stop('billing', 'SIGKILL');
  const r = await request(gw, 'PUT', groupPath(sub, 'rg', 'takeover'), { token, body: kit.sleeperGroup({ cpu: 0.25 }) });
  assert.equal(r.status, 201, r.body);
  const id = kit.sql("SELECT group_id FROM gateway.container_groups WHERE name = 'takeover'");
  const start = await startedAt(id);
  await sleep(1500);
  const end = await deleteAndWait('takeover', id);
  const billed = Number(await until('billed by the standby', () =>
    kit.sql(`SELECT end_ms - start_ms FROM billing.intervals WHERE group_id = '${id}'`), 30000));
  assert.ok(billed >= end.requested - start - 1000 && billed <= end.gone - start + 1000, `billed ${billed} ms`);
  assert.equal(lockHolders(), '1');
  await kit.stop('billing-standby');
  startBilling();
});

test('an interval whose stop never comes is closed from the node heartbeats', async () => {
  // The node dies with the group running and never comes back: nobody reports the stop.
  const r = await request(gw, 'PUT', groupPath(sub, 'rg', 'orphan'), { token, body: kit.sleeperGroup({ cpu: 0.25 }) });
  assert.equal(r.status, 201, r.body);
  const id = kit.sql("SELECT group_id FROM gateway.container_groups WHERE name = 'orphan'");
  const start = await startedAt(id);
  await sleep(2000);
  const killed = Date.now();
  await kit.stop('node-bl-a', 'SIGKILL');
  await kit.stop('billing');
  // Restart billing with a short node-loss horizon so the test need not wait 30 s.
  kit.spawn('billing', 'services/billing/skiff-billing', { SKIFF_METRICS_LISTEN: '', SKIFF_BILLING_TICK_MS: '200',
    SKIFF_BILLING_NODE_LOST_AFTER_MS: '3000' });
  const row = await until('the orphan interval closed', () =>
    kit.sql(`SELECT end_ms - start_ms, end_reason FROM billing.intervals WHERE group_id = '${id}'`), 30000);
  const [billed, reason] = row.split('|');
  console.log(`orphan: billed ${billed} ms, ran ${killed - start} ms until its node was killed`);
  assert.equal(reason, 'NodeLost');
  // Billed to the node's last heartbeat (every 500 ms) before it died.
  assert.ok(Number(billed) <= killed - start + 1000 && Number(billed) >= killed - start - 1500, `${billed} vs ${killed - start}`);
});
