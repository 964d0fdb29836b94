// The scheduler end to end: two skiff-scheduler replicas, two real nodes (each with its image
// cache) running groups under runc, the gateway, NATS, Postgres and the registry. Checks that
// replicas racing over a small node never over-commit it, that waiting groups are placed when a
// node appears, that a killed node's Always groups run elsewhere within 15 s and its stale
// copies are stopped when it returns, Spot eviction, and the gateway's quota and rate errors.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID, randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { connect } from 'nats';
import { startInfra, Gateway, request, groupPath, sleep, until, serviceKit } from './harness.mjs';

let infra, gw, kit;
const subs = { race: randomUUID(), spot: randomUUID(), quota: randomUUID() };
const tokens = {};
const startScheduler = (name) => kit.startScheduler(name);
const startNode = (id, cpu) => kit.startNode(id, cpu);
const stop = (name, signal) => kit.stop(name, signal);
const sql = (query) => kit.sql(query);
const running = (id) => kit.running(id);
const sleeperGroup = (options) => kit.sleeperGroup(options);

async function create(sub, name, body) {
  const r = await request(gw, 'PUT', groupPath(sub, 'rg', name), { token: tokens[sub], body });
  assert.equal(r.status, 201, r.body);
  return sql(`SELECT group_id FROM gateway.container_groups WHERE name = '${name}'`);
}

const placement = (groupId) => sql(`SELECT state || ' ' || coalesce(node_id, '-') || ' ' || placement_generation || ' ' || reason FROM scheduler.groups WHERE group_id = '${groupId}'`);

before(async () => {
  infra = startInfra({ registry: true });
  infra.secretKey = randomBytes(32).toString('base64');
  kit = serviceKit(infra);
  gw = await new Gateway(infra, { SKIFF_GATEWAY_QUOTA_GROUPS: '5', SKIFF_GATEWAY_CREATES_PER_5_MINUTES: '7' }).start();
  for (const sub of Object.values(subs)) tokens[sub] = gw.createToken(sub);
  startScheduler('scheduler-1');
  startScheduler('scheduler-2');
  startNode('it-a', 1);
  await until('node it-a registered', () => {
    try { return sql("SELECT count(*) FROM scheduler.nodes WHERE node_id = 'it-a'") === '1'; } catch { return false; }
  });
});

after(async () => {
  // Delete every group through the API so the nodes remove their containers, then stop all.
  for (const sub of Object.values(subs)) {
    const list = await request(gw, 'GET', `/subscriptions/${sub}/providers/Microsoft.ContainerInstance/containerGroups?api-version=2023-05-01`, { token: tokens[sub] });
    for (const g of list.json?.value ?? []) {
      await request(gw, 'DELETE', `${g.id}?api-version=2023-05-01`, { token: tokens[sub] });
    }
  }
  for (let i = 0; i < 100 && ['it-a', 'it-b', 'it-c'].some((id) => running(id).length); ++i) await sleep(200);
  await kit?.stopAll();
  await gw?.stop();
  kit?.cleanNodes(['it-a', 'it-b', 'it-c']);
  infra?.stop();
});

const groups = [];

test('two schedulers racing over one small node never over-commit it', async () => {
  const sub = subs.race;
  const names = ['r1', 'r2', 'r3', 'r4'];
  await Promise.all(names.map((name) => request(gw, 'PUT', groupPath(sub, 'rg', name), { token: tokens[sub], body: sleeperGroup() })
    .then((r) => assert.equal(r.status, 201, r.body))));
  for (const name of names) groups.push(sql(`SELECT group_id FROM gateway.container_groups WHERE name = '${name}'`));
  await until('two placed and two waiting', () => {
    const states = groups.map((g) => placement(g).split(' ')[0]).sort().join(',');
    return states === 'Placed,Placed,Waiting,Waiting';
  });
  // It stays that way: the node (1 cpu) holds exactly two 0.5-cpu groups.
  for (let i = 0; i < 10; ++i) {
    assert.equal(sql("SELECT count(*) FROM scheduler.groups WHERE node_id = 'it-a' AND state = 'Placed'"), '2');
    await sleep(200);
  }
  await until('both placed groups running on it-a', () => running('it-a').length === 2);
  const waiting = groups.filter((g) => placement(g).startsWith('Waiting'));
  for (const g of waiting) assert.match(placement(g), /not available/);
});

test('waiting groups are placed when a node with room appears', async () => {
  startNode('it-b', 2);
  await until('all four placed', () => groups.every((g) => placement(g).startsWith('Placed')));
  assert.equal(sql("SELECT count(*) FROM scheduler.groups WHERE node_id = 'it-b' AND state = 'Placed'"), '2');
  await until('two running on it-b', () => running('it-b').length === 2);
});

test("a killed node's Always groups run on the other node within 15 s", async () => {
  const onA = groups.filter((g) => placement(g).split(' ')[1] === 'it-a');
  assert.equal(onA.length, 2);
  const killedAt = Date.now();
  await stop('node-it-a', 'SIGKILL');  // its containers keep running under their shims
  await until('it-a groups placed on it-b', () => onA.every((g) => placement(g).split(' ')[1] === 'it-b'), 15000);
  await until('four running on it-b', () => running('it-b').length === 4, Math.max(1000, 15000 - (Date.now() - killedAt)));
  assert.ok(Date.now() - killedAt < 15000, `took ${Date.now() - killedAt} ms`);
  assert.equal(sql("SELECT condition FROM scheduler.nodes WHERE node_id = 'it-a'"), 'Lost');
  for (const g of onA) assert.equal(placement(g).split(' ')[2], '3');  // placed, rescheduled, placed again
  // The stale copies still run on it-a: the node is gone, not its containers.
  assert.equal(running('it-a').length, 2);
});

test('the old node returning stops its stale copies: no group runs twice', async () => {
  startNode('it-a', 1);
  await until('it-a ready again', () => sql("SELECT condition FROM scheduler.nodes WHERE node_id = 'it-a'") === 'Ready');
  await until('stale copies gone from it-a', () => running('it-a').length === 0, 20000);
  assert.equal(running('it-b').length, 4);
});

test('a Regular group evicts a Spot group when it needs the room', async () => {
  const sub = subs.spot;
  // The placement events as the scheduler's outbox relay publishes them (published rows leave
  // the outbox).
  const nc = await connect({ servers: infra.env.NATS_URL });
  const published = [];
  nc.subscribe('skiff.events.placement.>', {
    callback: (err, msg) => { if (!err) published.push({ subject: msg.subject, text: Buffer.from(msg.data).toString('latin1') }); },
  });
  await nc.flush();
  // it-b is full (2 cpu); it-a (1 cpu) is empty again.
  const spot = await create(sub, 'spot', sleeperGroup({ cpu: 1, priority: 'Spot' }));
  await until('spot placed on it-a', () => placement(spot).startsWith('Placed it-a'));
  await until('spot running', () => running('it-a').includes(spot));
  const regular = await create(sub, 'regular', sleeperGroup({ cpu: 1 }));
  await until('regular placed on it-a', () => placement(regular).startsWith('Placed it-a'));
  assert.match(placement(spot), /^Waiting - \d+ SpotEvicted$/);
  await until('regular runs and spot does not', () => {
    const now = running('it-a');
    return now.includes(regular) && !now.includes(spot);
  });
  const spotEvents = () => published.filter((e) => e.text.includes(spot)).map((e) => e.subject);
  await until('spot placed and evicted published', () => spotEvents().length >= 2);
  assert.deepEqual(spotEvents(), ['skiff.events.placement.placed', 'skiff.events.placement.evicted']);
  await nc.close();
});

test('quota and create-rate errors come back as ARM errors', async () => {
  const sub = subs.quota;
  const small = sleeperGroup({ cpu: 0.1 });
  for (let i = 0; i < 5; ++i) {
    const r = await request(gw, 'PUT', groupPath(sub, 'rg', `q${i}`), { token: tokens[sub], body: small });
    assert.equal(r.status, 201, r.body);
  }
  const over = await request(gw, 'PUT', groupPath(sub, 'rg', 'q5'), { token: tokens[sub], body: small });
  assert.equal(over.status, 409);
  assert.equal(over.json.error.code, 'ContainerGroupQuotaReached');
  for (const name of ['q0', 'q1']) {
    assert.equal((await request(gw, 'DELETE', groupPath(sub, 'rg', name), { token: tokens[sub] })).status, 202);
  }
  for (const name of ['q5', 'q6']) {
    assert.equal((await request(gw, 'PUT', groupPath(sub, 'rg', name), { token: tokens[sub], body: small })).status, 201);
  }
  // Seven creates in five minutes: the eighth is throttled.
  assert.equal((await request(gw, 'DELETE', groupPath(sub, 'rg', 'q2'), { token: tokens[sub] })).status, 202);
  const throttled = await request(gw, 'PUT', groupPath(sub, 'rg', 'q7'), { token: tokens[sub], body: small });
  assert.equal(throttled.status, 429);
  assert.equal(throttled.json.error.code, 'TooManyRequests');
  assert.ok(Number(throttled.headers['retry-after']) > 0 && Number(throttled.headers['retry-after']) <= 300);
});

test('drain moves a node\'s groups to another node, started there before they stop here', async () => {
  startNode('it-c', 4);
  await until('it-c registered', () => sql("SELECT count(*) FROM scheduler.nodes WHERE node_id = 'it-c'") === '1');
  const admin = (...args) => spawnSync(join(kit.build, 'services/scheduler/skiff-scheduler'), args,
    { env: { ...process.env, SKIFF_BUS_URL: infra.env.NATS_URL, SKIFF_LOG_LEVEL: 'warn' } });
  const drained = admin('drain', 'it-b');
  assert.equal(drained.status, 0, drained.stderr.toString());
  assert.match(drained.stdout.toString(), /drain it-b: 4 groups moved/);
  await until('nothing runs on it-b', () => running('it-b').length === 0);
  for (const g of groups) assert.match(placement(g), /^Placed it-c /);
  await until('the moved groups run on it-c', () => groups.every((g) => running('it-c').includes(g)));
  const nodes = admin('nodes').stdout.toString();
  assert.match(nodes, /it-b\s+\S*\s*Draining/);
  // A refused command says why and exits non-zero.
  const unknown = admin('cordon', 'no-such-node');
  assert.equal(unknown.status, 1);
  assert.match(unknown.stderr.toString(), /NodeNotFound/);
});

test('a group that ended gives its reservation back', async () => {
  const body = sleeperGroup({ cpu: 1, restartPolicy: 'Never' });
  body.properties.containers[0].properties.image = `${infra.env.REGISTRY}/skiff/hello:1`;
  const job = await create(subs.spot, 'job', body);
  await until('the job ran and ended', () => /^Ended it-c \d+ Succeeded$/.test(placement(job)));
  assert.equal(sql(`SELECT count(*) FROM scheduler.groups WHERE node_id = 'it-c' AND state = 'Placed' AND group_id = '${job}'`), '0');
});
