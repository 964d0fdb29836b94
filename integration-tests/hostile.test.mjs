// 1,000 malformed or hostile requests: each gets a 4xx with an ARM-shaped error (or, for bytes
// that are not HTTP at all, a 400 and a closed connection); no 5xx; the gateway stays up.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { gatewayStack, request, groupPath, helloGroup } from './harness.mjs';

const stack = gatewayStack();
let infra, gw, token, sub;
before(async () => ({ infra, gw, token, sub } = await stack.start()));
after(() => stack.stop());

// Sends raw bytes over TLS and returns the status code of the first response line (0 if none).
function raw(bytes) {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port: gw.port, ca: readFileSync(infra.env.CA), servername: 'localhost' }, () => {
      socket.write(bytes);
    });
    let data = '';
    socket.setTimeout(10000, () => socket.destroy());
    socket.on('data', (d) => {
      data += d.toString('latin1');
      // A whole response has arrived: hang up, as a client would.
      const end = data.indexOf('\r\n\r\n');
      const length = /content-length: *(\d+)/i.exec(data);
      if (end >= 0 && length && data.length >= end + 4 + Number(length[1])) socket.end();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(data);
      resolve({ status: m ? Number(m[1]) : 0, data });
    });
    socket.on('end', () => socket.end());
  });
}

const deep = (n) => '{"properties":'.repeat(n) + '{}' + '}'.repeat(n);
const path = (name = 'victim') => groupPath(sub, 'rg-hostile', name);
const cases = [
  () => request(gw, 'GET', path()),                                                   // no token
  () => request(gw, 'GET', path(), { token: 'skf_' + randomBytes(16).toString('hex') }), // unknown token
  () => request(gw, 'GET', path(), { headers: { authorization: 'Basic Zm9vOmJhcg==' } }),
  () => request(gw, 'PUT', path(), { token, body: '{"location": "local", "properties": ' }),
  () => request(gw, 'PUT', path(), { token, body: randomBytes(64) }),
  () => request(gw, 'PUT', path(), { token, body: deep(5000) }),
  () => request(gw, 'PUT', path(), { token, body: '[1,2,3]' }),
  () => request(gw, 'PUT', path(), { token, body: { ...helloGroup(), properties: { ...helloGroup().properties, osType: 'Windows' } } }),
  () => request(gw, 'PUT', path(), { token, body: { location: 'local', properties: { containers: [{ name: 'x', properties: { image: 'ok', resources: { requests: { cpu: -1, memoryInGB: 1 } } } }] } } }),
  () => request(gw, 'PUT', path('Has_Upper'), { token, body: helloGroup() }),
  () => request(gw, 'PUT', path('a'.repeat(64)), { token, body: helloGroup() }),
  () => request(gw, 'GET', path().replace('api-version=2023-05-01', 'api-version=2099-01-01'), { token }),
  () => request(gw, 'GET', path().replace('?api-version=2023-05-01', ''), { token }),
  () => request(gw, 'GET', `/subscriptions/${sub}/resourceGroups/rg/providers/Microsoft.ContainerInstance/containerGroups/..%2f..%2fetc%2fpasswd?api-version=2023-05-01`, { token }),
  () => request(gw, 'GET', `/subscriptions/${sub}/resourceGroups/rg/providers/Microsoft.ContainerInstance/containerGroups/%zz?api-version=2023-05-01`, { token }),
  () => request(gw, 'GET', '/../../../etc/passwd', { token }),
  () => request(gw, 'POST', path(), { token, body: helloGroup() }),
  () => request(gw, 'GET', `/subscriptions/${randomUUID()}/providers/Microsoft.ContainerInstance/containerGroups?api-version=2023-05-01`, { token }),
  () => request(gw, 'GET', `/subscriptions/${sub}/providers/Microsoft.ContainerInstance/containerGroups?api-version=2023-05-01&$skipToken=%00%01`, { token }),
  () => request(gw, 'GET', `/subscriptions/${sub}/providers/Microsoft.ContainerInstance/locations/local/operations/'%20OR%201=1?api-version=2023-05-01`, { token }),
  () => request(gw, 'PATCH', path(), { token, body: '{"tags": "nope"}' }),
  () => raw('GARBAGE\r\n\r\n'),
  () => raw(randomBytes(200)),
  () => raw(`GET ${path()} HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20000)}\r\n\r\n`),
  () => raw(`PUT ${path()} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n`),
  () => raw(`PUT ${path()} HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n`),
];
const bigBody = () => request(gw, 'PUT', path(), { token, body: '{"a":"' + 'x'.repeat(2 * 1024 * 1024) + '"}' });

test('1,000 hostile requests get 4xx and the gateway stays up', async () => {
  const statuses = new Map();
  const bad = [];
  let next = 0;
  const total = 1000;
  async function worker() {
    while (next < total) {
      const i = next++;
      const run = i % 100 === 99 ? bigBody : cases[i % cases.length];
      const r = await run();
      statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
      if (r.status < 400 || r.status >= 500) bad.push({ i, status: r.status, body: (r.body ?? r.data ?? '').slice(0, 200) });
      else if (r.json !== undefined || r.body) {
        // Every answer with a body is ARM-shaped.
        const body = r.json ?? JSON.parse(r.data.slice(r.data.indexOf('\r\n\r\n') + 4) || '{}');
        if (!body.error?.code || !body.error?.message) bad.push({ i, status: r.status, body: JSON.stringify(body).slice(0, 200) });
      }
    }
  }
  await Promise.all(Array.from({ length: 8 }, worker));
  console.log('statuses:', Object.fromEntries(statuses));
  assert.deepEqual(bad, []);
  assert.ok(statuses.get(413) >= 10, 'oversized bodies get 413');

  // Still serving, and nothing hostile was stored.
  assert.equal(gw.proc.exitCode, null);
  const ok = await request(gw, 'PUT', path('survivor'), { token, body: helloGroup() });
  assert.equal(ok.status, 201, ok.body);
  const list = await request(gw, 'GET', `/subscriptions/${sub}/providers/Microsoft.ContainerInstance/containerGroups?api-version=2023-05-01`, { token });
  assert.deepEqual(list.json.value.map((g) => g.name), ['survivor']);
});

// Volume fields that would reach the node's host as paths or commands: each is a 400
// InvalidVolume naming the field, and nothing is stored.
test('hostile volume fields are refused with the field named', async () => {
  const withVolume = (volume, mountPath = '/data') => {
    const group = helloGroup();
    group.properties.volumes = [{ name: 'v', ...volume }];
    group.properties.containers[0].properties.volumeMounts = [{ name: 'v', mountPath }];
    return group;
  };
  const share = (storageAccountName, shareName, storageAccountKey = 'key') => ({ azureFile: { storageAccountName, shareName, storageAccountKey } });
  const cases = [
    [share('skiffdata', '../../..'), 'properties.volumes[0].azureFile.shareName'],
    [share('../../etc', 'data'), 'properties.volumes[0].azureFile.storageAccountName'],
    [share('skiffdata', 'data', ''), 'properties.volumes[0].azureFile.storageAccountKey'],
    [{ gitRepo: { repository: 'https://example.test/r.git', directory: '../../..' } }, 'properties.volumes[0].gitRepo.directory'],
    [{ gitRepo: { repository: 'https://example.test/r.git', directory: '/etc' } }, 'properties.volumes[0].gitRepo.directory'],
    [{ gitRepo: { repository: '/var/lib/skiff' } }, 'properties.volumes[0].gitRepo.repository'],
    [{ gitRepo: { repository: 'http://127.0.0.1:4222/' } }, 'properties.volumes[0].gitRepo.repository'],
    [{ gitRepo: { repository: '--upload-pack=touch /tmp/x' } }, 'properties.volumes[0].gitRepo.repository'],
    [{ secret: { '../../etc/passwd': 'eA==' } }, 'properties.volumes[0]'],
  ];
  for (const [volume, field] of cases) {
    const r = await request(gw, 'PUT', path('vol-victim'), { token, body: withVolume(volume) });
    assert.equal(r.status, 400, JSON.stringify(volume));
    assert.equal(r.json.error.code, 'InvalidVolume', JSON.stringify(r.json));
    assert.ok(r.json.error.message.length > 0);
    assert.equal(r.json.error.target ?? field, field, JSON.stringify(r.json));
  }
  for (const mountPath of ['/proc', '/sys/kernel', '/dev', '/', '/data/../proc']) {
    const r = await request(gw, 'PUT', path('vol-victim'), { token, body: withVolume({ emptyDir: {} }, mountPath) });
    assert.equal(r.status, 400, mountPath);
    assert.equal(r.json.error.code, 'InvalidVolume', JSON.stringify(r.json));
  }
  const get = await request(gw, 'GET', path('vol-victim'), { token });
  assert.equal(get.status, 404);
});
