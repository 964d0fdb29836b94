// The container-group API end to end against real Postgres and NATS: create, get, list with
// paging, patch, delete, long-running-operation URLs, tenant isolation, restart durability.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID, randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { startInfra, Gateway, request, groupPath, helloGroup, gatewayBin } from './harness.mjs';

let infra, gw, token, otherToken;
const sub = randomUUID();
const otherSub = randomUUID();

before(async () => {
  infra = startInfra();
  gw = await new Gateway(infra, { SKIFF_GATEWAY_PAGE_SIZE: '3' }).start();
  token = gw.createToken(sub);
  otherToken = gw.createToken(otherSub);
});

after(async () => {
  await gw?.stop();
  infra?.stop();
});

test('create, get, patch tags, delete', async () => {
  const created = await request(gw, 'PUT', groupPath(sub, 'rg-crud', 'web'), { token, body: helloGroup() });
  assert.equal(created.status, 201, created.body);
  assert.equal(created.json.properties.provisioningState, 'Pending');
  assert.equal(created.json.name, 'web');
  assert.match(created.headers['azure-asyncoperation'], /\/providers\/Microsoft\.ContainerInstance\/locations\/local\/operations\/[0-9a-f-]{36}\?api-version=2023-05-01$/);

  const op = await request(gw, 'GET', new URL(created.headers['azure-asyncoperation']).pathname + '?api-version=2023-05-01', { token });
  assert.equal(op.status, 200);
  assert.equal(op.json.status, 'InProgress');

  const got = await request(gw, 'GET', groupPath(sub, 'rg-crud', 'web'), { token });
  assert.equal(got.status, 200);
  assert.equal(got.json.id, `/subscriptions/${sub}/resourceGroups/rg-crud/providers/Microsoft.ContainerInstance/containerGroups/web`);
  const env = got.json.properties.containers[0].properties.environmentVariables;
  assert.deepEqual(env.map((e) => e.name), ['GREETING', 'API_KEY']);
  assert.equal(env[1].secureValue, undefined);
  assert.ok(!got.body.includes('do-not-leak-42'));

  const patched = await request(gw, 'PATCH', groupPath(sub, 'rg-crud', 'web'), { token, body: { tags: { owner: 'team-a' } } });
  assert.equal(patched.status, 200, patched.body);
  assert.deepEqual(patched.json.tags, { owner: 'team-a' });

  const deleted = await request(gw, 'DELETE', groupPath(sub, 'rg-crud', 'web'), { token });
  assert.equal(deleted.status, 202);
  const location = new URL(deleted.headers.location);
  const done = await request(gw, 'GET', location.pathname + location.search, { token });
  assert.equal(done.status, 204);
  assert.equal((await request(gw, 'GET', groupPath(sub, 'rg-crud', 'web'), { token })).status, 404);
  assert.equal((await request(gw, 'DELETE', groupPath(sub, 'rg-crud', 'web'), { token })).status, 204);
});

test('list by resource group and subscription pages with nextLink', async () => {
  const names = ['p1', 'p2', 'p3', 'p4', 'p5', 'p6', 'p7'];
  for (const name of names) {
    const r = await request(gw, 'PUT', groupPath(sub, 'rg-list', name), { token, body: helloGroup() });
    assert.equal(r.status, 201, r.body);
  }
  await request(gw, 'PUT', groupPath(sub, 'rg-other', 'solo'), { token, body: helloGroup() });

  async function collect(path) {
    const seen = [];
    let pages = 0;
    let next = path;
    while (next) {
      const r = await request(gw, 'GET', next, { token });
      assert.equal(r.status, 200, r.body);
      pages += 1;
      seen.push(...r.json.value.map((g) => g.name));
      assert.ok(r.json.value.length <= 3);
      next = r.json.nextLink ? new URL(r.json.nextLink).pathname + new URL(r.json.nextLink).search : undefined;
    }
    return { seen, pages };
  }
  const inRg = await collect(`/subscriptions/${sub}/resourceGroups/rg-list/providers/Microsoft.ContainerInstance/containerGroups?api-version=2023-05-01`);
  assert.deepEqual(inRg.seen, names);
  assert.equal(inRg.pages, 3);
  const inSub = await collect(`/subscriptions/${sub}/providers/Microsoft.ContainerInstance/containerGroups?api-version=2023-05-01`);
  assert.deepEqual(inSub.seen, [...names, 'solo']);
});

test('tenant isolation: another subscription sees nothing and changes nothing', async () => {
  await request(gw, 'PUT', groupPath(sub, 'rg-iso', 'private'), { token, body: helloGroup() });
  for (const method of ['GET', 'PUT', 'PATCH', 'DELETE']) {
    const r = await request(gw, method, groupPath(sub, 'rg-iso', 'private'), { token: otherToken, body: method === 'PUT' || method === 'PATCH' ? helloGroup() : undefined });
    assert.equal(r.status, 404, `${method}: ${r.body}`);
    assert.equal(r.json.error.code, 'SubscriptionNotFound');
  }
  const theirs = await request(gw, 'GET', `/subscriptions/${otherSub}/providers/Microsoft.ContainerInstance/containerGroups?api-version=2023-05-01`, { token: otherToken });
  assert.equal(theirs.status, 200);
  assert.deepEqual(theirs.json.value ?? [], []);
  assert.equal((await request(gw, 'GET', groupPath(sub, 'rg-iso', 'private'), { token })).status, 200);
  const noToken = await request(gw, 'GET', groupPath(sub, 'rg-iso', 'private'));
  assert.equal(noToken.status, 401);
  assert.equal(noToken.json.error.code, 'AuthenticationFailed');
});

test('a restarted gateway loses nothing', async () => {
  const body = helloGroup();
  body.tags = { durable: 'yes' };
  assert.equal((await request(gw, 'PUT', groupPath(sub, 'rg-durable', 'keep'), { token, body })).status, 201);
  const before = await request(gw, 'GET', groupPath(sub, 'rg-durable', 'keep'), { token });
  await gw.stop('SIGKILL');
  await gw.start();
  const afterRestart = await request(gw, 'GET', groupPath(sub, 'rg-durable', 'keep'), { token });
  assert.equal(afterRestart.status, 200);
  assert.deepEqual(afterRestart.json, before.json);
  // The sealed secret survived too: the stored group still names it.
  assert.equal(afterRestart.json.properties.containers[0].properties.environmentVariables[1].name, 'API_KEY');
});

// Key rotation: with a new current key and the old one among the old keys, `reseal-secrets`
// seals every stored secret again under the new key; the gateway keeps serving throughout, and
// once resealed the old key is no longer needed.
test('reseal-secrets moves stored secrets to a new key; old values open until then', async () => {
  const rsub = randomUUID();
  const rtoken = gw.createToken(rsub);
  assert.equal((await request(gw, 'PUT', groupPath(rsub, 'rg-keys', 'rotated'), { token: rtoken, body: helloGroup() })).status, 201);
  const stored = () => spawnSync('psql', [infra.env.STORE_URL, '-Atc',
    `SELECT spec->'properties'->'containers'->0->'properties'->'environmentVariables'->1->>'secureValue' FROM gateway.container_groups WHERE subscription_id = '${rsub}'`],
  { encoding: 'utf8' }).stdout.trim();
  const before = stored();
  assert.match(before, /^enc:v2:[0-9a-f]{8}:/);
  const oldKey = gw.env.SKIFF_GATEWAY_SECRET_KEY;
  const newKey = randomBytes(32).toString('base64');
  const reseal = (env) => spawnSync(gatewayBin, ['reseal-secrets'], { env: { ...gw.env, ...env }, encoding: 'utf8' });
  const rotated = reseal({ SKIFF_GATEWAY_SECRET_KEY: newKey, SKIFF_GATEWAY_OLD_SECRET_KEYS: oldKey });
  assert.equal(rotated.status, 0, rotated.stdout + rotated.stderr);
  assert.match(rotated.stdout, /resealed [1-9]\d* values in [1-9]\d* groups/);
  const after = stored();
  assert.notEqual(after.split(':')[2], before.split(':')[2]);
  // Nothing left under the old key: a second pass rewrites nothing, and the new key alone opens all.
  const again = reseal({ SKIFF_GATEWAY_SECRET_KEY: newKey, SKIFF_GATEWAY_OLD_SECRET_KEYS: '' });
  assert.equal(again.status, 0, again.stdout + again.stderr);
  assert.match(again.stdout, /resealed 0 values in 0 groups.* 0 values open with no configured key/);
  // A key that opens nothing says so (exit 2) and leaves the values alone.
  const stranger = reseal({ SKIFF_GATEWAY_SECRET_KEY: randomBytes(32).toString('base64'), SKIFF_GATEWAY_OLD_SECRET_KEYS: '' });
  assert.equal(stranger.status, 2, stranger.stdout);
  assert.equal(stored(), after);
  // Put the stored values back under the key this file's gateway runs with.
  assert.equal(reseal({ SKIFF_GATEWAY_SECRET_KEY: oldKey, SKIFF_GATEWAY_OLD_SECRET_KEYS: newKey }).status, 0);
});

test('the gateway stops cleanly on SIGTERM', async () => {
  const { code } = await gw.stop('SIGTERM');
  assert.equal(code, 0);
  await gw.start();
});
