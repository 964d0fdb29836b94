// Azure's own SDK (@azure/arm-containerinstance) against Skiff: create, get, list (with paging
// through nextLink), delete, using a custom endpoint and a static bearer token.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ContainerInstanceManagementClient } from '@azure/arm-containerinstance';
import { startInfra, Gateway } from './harness.mjs';

let infra, gw, client;
const sub = randomUUID();

before(async () => {
  infra = startInfra();
  gw = await new Gateway(infra, { SKIFF_GATEWAY_PAGE_SIZE: '2' }).start();
  const token = gw.createToken(sub);
  const credential = { getToken: async () => ({ token, expiresOnTimestamp: Date.now() + 3600_000 }) };
  client = new ContainerInstanceManagementClient(credential, sub, {
    endpoint: gw.url,
    credentialScopes: [`${gw.url}/.default`],
    tlsOptions: { ca: readFileSync(infra.env.CA, 'utf8') },
    retryOptions: { maxRetries: 0 },
  });
});

after(async () => {
  await gw?.stop();
  infra?.stop();
});

const group = (image) => ({
  location: 'local',
  osType: 'Linux',
  restartPolicy: 'OnFailure',
  containers: [{
    name: 'app',
    image,
    resources: { requests: { cpu: 1, memoryInGB: 1.5 } },
    ports: [{ port: 80, protocol: 'TCP' }],
    environmentVariables: [{ name: 'MODE', value: 'sdk' }, { name: 'PASSWORD', secureValue: 'sdk-secret' }],
  }],
  ipAddress: { type: 'Public', ports: [{ port: 80, protocol: 'TCP' }], dnsNameLabel: 'sdk-demo' },
  tags: { via: 'azure-sdk' },
});

test('the Azure SDK creates, gets, lists and deletes container groups', async () => {
  const poller = await client.containerGroups.beginCreateOrUpdate('sdk-rg', 'sdk-web', group('127.0.0.1:5000/skiff/httpd:1'));
  assert.equal(poller.isDone(), false);  // provisioning continues after the PUT is accepted

  const got = await client.containerGroups.get('sdk-rg', 'sdk-web');
  assert.equal(got.name, 'sdk-web');
  assert.equal(got.provisioningState, 'Pending');
  assert.equal(got.containers[0].resources.requests.memoryInGB, 1.5);
  assert.equal(got.ipAddress.dnsNameLabel, 'sdk-demo');
  assert.equal(got.containers[0].environmentVariables[1].name, 'PASSWORD');
  assert.equal(got.containers[0].environmentVariables[1].secureValue, undefined);
  assert.deepEqual(got.tags, { via: 'azure-sdk' });

  for (const name of ['sdk-a', 'sdk-b', 'sdk-c']) {
    await client.containerGroups.beginCreateOrUpdate('sdk-rg', name, group('127.0.0.1:5000/skiff/hello:1'));
  }
  const inRg = [];
  for await (const g of client.containerGroups.listByResourceGroup('sdk-rg')) inRg.push(g.name);
  assert.deepEqual(inRg.sort(), ['sdk-a', 'sdk-b', 'sdk-c', 'sdk-web']);  // page size 2: the SDK followed nextLink
  const inSub = [];
  for await (const g of client.containerGroups.list()) inSub.push(g.name);
  assert.equal(inSub.length, 4);

  const updated = await client.containerGroups.update('sdk-rg', 'sdk-web', { tags: { via: 'patch' } });
  assert.deepEqual(updated.tags, { via: 'patch' });

  await client.containerGroups.beginDeleteAndWait('sdk-rg', 'sdk-web');
  await assert.rejects(client.containerGroups.get('sdk-rg', 'sdk-web'), (e) => e.statusCode === 404 && e.code === 'ResourceNotFound');
});

test('the SDK surfaces ARM errors', async () => {
  const bad = group('127.0.0.1:5000/skiff/hello:1');
  bad.osType = 'Windows';
  await assert.rejects(
    client.containerGroups.beginCreateOrUpdate('sdk-rg', 'win', bad),
    (e) => e.statusCode === 400 && e.code === 'OsTypeNotSupported');
});
