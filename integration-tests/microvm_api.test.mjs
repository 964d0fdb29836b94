// MicroVM isolation through the API: the gateway accepts `isolation: MicroVM`, the scheduler
// places it only on a node that offers microVMs, and it runs there in its own kernel (QEMU
// microvm; TCG on machines without KVM) with the group's network: a Public group answers on its
// public address from inside the VM.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID, randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import http from 'node:http';
import { spawnSync } from 'node:child_process';
import { startInfra, Gateway, request, groupPath, until, serviceKit } from './harness.mjs';

const kernels = existsSync('/boot') ? readdirSync('/boot').filter((f) => /^vmlinuz-.*-cloud-amd64$/.test(f)).sort() : [];
const kernel = kernels.length ? join('/boot', kernels[kernels.length - 1]) : '';
let infra, gw, kit, token, initramfs;
const sub = randomUUID();
const skip = !kernel && 'no linux-image-cloud-amd64 kernel in /boot';
// Pools of this run alone: a network another run left behind cannot shadow this one's routes.
const octet = () => Math.floor(Math.random() * 250);
const networkEnv = { SKIFF_NETWORK_AGENT: 'vm-net',
  SKIFF_NETWORK_DEFAULT_POOL: `10.${200 + Math.floor(Math.random() * 40)}.0.0/16`, SKIFF_NETWORK_DEFAULT_PREFIX_LENGTH: '24',
  SKIFF_NETWORK_PUBLIC_POOL: `127.102.${octet()}.0/24`, SKIFF_DNS_LISTEN: `127.0.0.1:${20000 + Math.floor(Math.random() * 20000)}`,
  SKIFF_NETWORK_MASQUERADE: 'false', SKIFF_DNS_UPSTREAMS: 'none' };  // nothing leaves this host

// Deletes a group and waits until it is gone, its VM and network attachment with it.
async function deleteAndWait(path) {
  const del = await request(gw, 'DELETE', path, { token });
  assert.ok([200, 202, 204].includes(del.status), del.body);
  await until('the group is gone', async () => (await request(gw, 'GET', path, { token })).status === 404, 60000);
}

before(async () => {
  if (skip) return;
  infra = startInfra({ registry: true });
  infra.secretKey = randomBytes(32).toString('base64');
  kit = serviceKit(infra);
  initramfs = join(kit.build, 'services/node/guest-initramfs.cpio');
  kit.spawn('network', 'services/network/skiff-network', networkEnv);
  gw = await new Gateway(infra, { SKIFF_GATEWAY_NETWORK: 'true' }).start();
  token = gw.createToken(sub);
  kit.startScheduler('scheduler');
  // A tight node without microVMs (bin-packing alone would choose it) and a roomier one with them.
  kit.startNode('vm-plain', 1, { SKIFF_NETWORK_AGENT: 'vm-net' });
  kit.startNode('vm-host', 2, { SKIFF_NODE_MICROVM: 'true', SKIFF_NODE_MICROVM_KERNEL: kernel,
    SKIFF_NODE_MICROVM_INITRAMFS: initramfs, SKIFF_NETWORK_AGENT: 'vm-net' });
  await kit.nodeRegistered('vm-plain');
  await kit.nodeRegistered('vm-host');
});

after(async () => {
  if (kit) {
    await until('no network attachments left', () => kit.sql('SELECT count(*) FROM network.attachments') === '0', 30000)
      .catch(() => {});
  }
  await gw?.stop();
  await kit?.stopAll();
  kit?.cleanNodes(['vm-plain', 'vm-host']);
  if (kit) {
    // One more reconcile with nothing attached removes the run's bridges and rules.
    kit.spawn('network-cleanup', 'services/network/skiff-network', networkEnv);
    await until('networks removed', () => kit.sql('SELECT count(*) FROM network.attachments') === '0', 20000).catch(() => {});
    await kit.stop('network-cleanup');
  }
  infra?.stop();
});

function httpGet(host, port) {
  return new Promise((resolve) => {
    const req = http.get({ host, port, path: '/', timeout: 3000 }, (res) => {
      let body = '';
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('error', (e) => resolve({ status: 0, body: String(e) }));
    req.on('timeout', () => req.destroy(new Error('timeout')));
  });
}

function vmGroup(registry, extra = {}) {
  return {
    location: 'local',
    properties: {
      osType: 'Linux', restartPolicy: 'Never', isolation: 'microvm',
      containers: [{ name: 'app', properties: {
        image: `${registry}/skiff/sleeper:1`, command: ['/bin/sh', '-c', 'echo kernel $(uname -r); sleep 600'],
        resources: { requests: { cpu: 0.5, memoryInGB: 0.3 } } } }],
      ...extra,
    },
  };
}

test('a MicroVM group is placed on the node that offers microVMs and runs in its kernel', { skip }, async () => {
  const path = groupPath(sub, 'rg', 'vm');
  const put = await request(gw, 'PUT', path, { token, body: vmGroup(infra.env.REGISTRY) });
  assert.ok(put.status === 200 || put.status === 201, put.body);
  assert.equal(put.json.properties.isolation, 'MicroVM');  // canonical spelling back
  let last;
  const running = await until('the group runs', async () => {
    const r = await request(gw, 'GET', path, { token });
    last = r.body;
    return r.json.properties?.instanceView?.state === 'Running' && r;
  }, 180000).catch((e) => { throw new Error(e.message + ': ' + last); });
  assert.equal(running.json.properties.isolation, 'MicroVM');
  assert.equal(kit.sql(`SELECT node_id FROM scheduler.groups WHERE subscription_id = '${sub}' AND name = 'vm'`), 'vm-host');
  const release = kernel.split('/').pop().slice('vmlinuz-'.length);
  const logs = await until('the guest kernel in the log', async () => {
    const r = await request(gw, 'GET', `${path.split('?')[0]}/containers/app/logs?api-version=2023-05-01`, { token });
    return r.json?.content?.includes(`kernel ${release}`) && r;
  }, 60000);
  assert.ok(!logs.json.content.includes(`kernel ${(await import('node:os')).release()}\n`), 'the host kernel');
  await deleteAndWait(path);
});

test('a Public MicroVM group answers on its public address from inside its VM', { skip }, async () => {
  const body = vmGroup(infra.env.REGISTRY, { restartPolicy: 'Always', ipAddress: { type: 'Public', ports: [{ port: 80 }] } });
  body.properties.containers[0].properties = { image: `${infra.env.REGISTRY}/skiff/httpd:1`, ports: [{ port: 80 }],
    resources: { requests: { cpu: 0.5, memoryInGB: 0.3 } } };
  const path = groupPath(sub, 'rg', 'vm-web');
  const put = await request(gw, 'PUT', path, { token, body });
  assert.ok(put.status === 200 || put.status === 201, put.body);
  const { ip } = put.json.properties.ipAddress;
  assert.match(ip, /^127\.102\.\d+\.\d+$/);
  const page = await until('the VM answering on its public port', async () => {
    const r = await httpGet(ip, 80);
    return r.status === 200 && r;
  }, 180000);
  assert.match(page.body, /Hello from Skiff/);
  assert.equal(kit.sql(`SELECT node_id FROM scheduler.groups WHERE subscription_id = '${sub}' AND name = 'vm-web'`), 'vm-host');

  const vm = await request(gw, 'GET', path, { token });
  assert.equal(vm.json.properties.isolation, 'MicroVM');
  await deleteAndWait(path);
});

test('a MicroVM group keeps its virtual network: a group in it reaches the VM, one in another network cannot', { skip }, async () => {
  const r = Math.floor(Math.random() * 40);
  const [a, b] = [`10.${41 + r}`, `10.${91 + r}`];  // clear of this run's default pool (10.200-239)
  const vnetPath = (name) =>
    `/subscriptions/${sub}/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/${name}?api-version=2023-04-01`;
  const subnetId = (vnet, subnet) =>
    `/subscriptions/${sub}/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/${vnet}/subnets/${subnet}`;
  for (const [name, prefix, subnets] of [['vm-vnet-a', a, ['s1', 's2']], ['vm-vnet-b', b, ['s1']]]) {
    const res = await request(gw, 'PUT', vnetPath(name), { token, body: { location: 'local', properties: {
      addressSpace: { addressPrefixes: [`${prefix}.0.0/16`] },
      subnets: subnets.map((s, i) => ({ name: s, properties: { addressPrefix: `${prefix}.${i + 1}.0/24` } })) } } });
    assert.equal(res.status, 201, res.body);
  }
  const web = vmGroup(infra.env.REGISTRY, { restartPolicy: 'Always', subnetIds: [{ id: subnetId('vm-vnet-a', 's1') }],
    ipAddress: { type: 'Private', ports: [{ port: 80, protocol: 'TCP' }] } });
  web.properties.containers[0].properties = { image: `${infra.env.REGISTRY}/skiff/httpd:1`, ports: [{ port: 80 }],
    resources: { requests: { cpu: 0.5, memoryInGB: 0.3 } } };
  const client = (subnet) => ({ location: 'local', properties: { osType: 'Linux', restartPolicy: 'Always',
    subnetIds: [{ id: subnet }], containers: [{ name: 'app', properties: { image: `${infra.env.REGISTRY}/skiff/sleeper:1`,
      resources: { requests: { cpu: 0.1, memoryInGB: 0.1 } } } }] } });
  const groups = { 'vm-web-a': web, 'client-a': client(subnetId('vm-vnet-a', 's2')), 'client-b': client(subnetId('vm-vnet-b', 's1')) };
  for (const [name, body] of Object.entries(groups)) {
    const put = await request(gw, 'PUT', groupPath(sub, 'rg', name), { token, body });
    assert.equal(put.status, 201, put.body);
  }
  const webIp = `${a}.1.4`;
  assert.equal((await request(gw, 'GET', groupPath(sub, 'rg', 'vm-web-a'), { token })).json.properties.ipAddress.ip, webIp);
  // A host program in a client's network namespace: what its containers' traffic does.
  const curlFrom = async (name) => {
    const row = await until(`${name} placed and running`, async () => {
      const view = (await request(gw, 'GET', groupPath(sub, 'rg', name), { token })).json;
      if (view.properties?.instanceView?.state !== 'Running') return false;
      return kit.sql(`SELECT g.group_id || ' ' || s.node_id FROM gateway.container_groups g JOIN scheduler.groups s ` +
        `ON s.group_id = g.group_id WHERE g.subscription_id = '${sub}' AND g.name = '${name}'`);
    }, 60000);
    const [id, node] = row.split(' ');
    return spawnSync('sh', ['-c', `ip netns exec skiff-${node}-${id} curl -s -m 3 http://${webIp}/`], { encoding: 'utf8', timeout: 20000 });
  };
  const page = await until('the VM answering its own virtual network', async () => {
    const res = await curlFrom('client-a');
    return /Hello from Skiff/.test(res.stdout) && res;
  }, 180000);
  assert.match(page.stdout, /Hello from Skiff/);
  assert.equal(kit.sql(`SELECT node_id FROM scheduler.groups WHERE subscription_id = '${sub}' AND name = 'vm-web-a'`), 'vm-host');
  // Another virtual network: dropped between the bridges, as for a runc group.
  const blocked = await curlFrom('client-b');
  assert.notEqual(blocked.status, 0);
  assert.doesNotMatch(blocked.stdout, /Hello/);
  for (const name of Object.keys(groups)) await deleteAndWait(groupPath(sub, 'rg', name));
});

test('refusals: an unknown isolation', { skip }, async () => {
  const bad = await request(gw, 'PUT', groupPath(sub, 'rg', 'bad-iso'), { token,
    body: vmGroup(infra.env.REGISTRY, { isolation: 'Hypervisor' }) });
  assert.equal(bad.status, 400);
  assert.equal(bad.json.error.code, 'InvalidEnumValue');
  assert.match(bad.json.error.message, /Container, MicroVM/);
});
