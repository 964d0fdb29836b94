// MicroVM isolation through the API: the gateway accepts `isolation: MicroVM` (and refuses what
// such a group cannot have yet), the scheduler places it only on a node that offers microVMs,
// and it runs there in its own kernel (QEMU microvm; TCG on machines without KVM).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID, randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { startInfra, Gateway, request, groupPath, until, serviceKit } from './harness.mjs';

const kernels = existsSync('/boot') ? readdirSync('/boot').filter((f) => /^vmlinuz-.*-cloud-amd64$/.test(f)).sort() : [];
const kernel = kernels.length ? join('/boot', kernels[kernels.length - 1]) : '';
let infra, gw, kit, token, initramfs;
const sub = randomUUID();
const skip = !kernel && 'no linux-image-cloud-amd64 kernel in /boot';

before(async () => {
  if (skip) return;
  infra = startInfra({ registry: true });
  infra.secretKey = randomBytes(32).toString('base64');
  kit = serviceKit(infra);
  initramfs = join(kit.build, 'services/node/guest-initramfs.cpio');
  gw = await new Gateway(infra).start();
  token = gw.createToken(sub);
  kit.startScheduler('scheduler');
  // A roomy node without microVMs (bin-packing alone would choose it) and a small one with them.
  kit.startNode('vm-plain', 1);
  kit.startNode('vm-host', 2, { SKIFF_NODE_MICROVM: 'true', SKIFF_NODE_MICROVM_KERNEL: kernel,
    SKIFF_NODE_MICROVM_INITRAMFS: initramfs });
  await kit.nodeRegistered('vm-plain');
  await kit.nodeRegistered('vm-host');
});

after(async () => {
  await kit?.stopAll();
  await gw?.stop();
  kit?.cleanNodes(['vm-plain', 'vm-host']);
  infra?.stop();
});

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
  const del = await request(gw, 'DELETE', path, { token });
  assert.ok([200, 202, 204].includes(del.status), del.body);
});

test('refusals: an unknown isolation, a MicroVM group with an IP address', { skip }, async () => {
  const bad = await request(gw, 'PUT', groupPath(sub, 'rg', 'bad-iso'), { token,
    body: vmGroup(infra.env.REGISTRY, { isolation: 'Hypervisor' }) });
  assert.equal(bad.status, 400);
  assert.equal(bad.json.error.code, 'InvalidEnumValue');
  const group = vmGroup(infra.env.REGISTRY, { ipAddress: { type: 'Public', ports: [{ port: 80 }] } });
  group.properties.containers[0].properties.ports = [{ port: 80 }];
  const withIp = await request(gw, 'PUT', groupPath(sub, 'rg', 'vm-ip'), { token, body: group });
  assert.equal(withIp.status, 400);
  assert.equal(withIp.json.error.code, 'IsolationFeatureNotSupported');
  assert.match(withIp.json.error.message, /MicroVM groups have no network interface yet/);
});
