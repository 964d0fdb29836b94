// Group networking for real, as root: the network service runs the CNI plugins (bridge, static,
// portmap, firewall) into the namespaces the node makes, with its isolation rules in iptables
// and its DNS responder. Two groups in one virtual network exchange HTTP; a group in another
// network cannot reach them; a Public group answers on its public address (loopback here) and
// by its DNS name; restart keeps the address; delete frees address, label and rules; a crash
// of node and network service leaves nothing once the network service reconciles.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { spawn, spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import http from 'node:http';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startInfra, Gateway, request, groupPath, until, serviceKit } from './harness.mjs';

let infra, gw, kit, token, ingressPort;
const sub = randomUUID();
const rg = 'net';
const dnsPort = 20000 + Math.floor(Math.random() * 20000);
const label = `shop-${randomUUID().slice(0, 8)}`;
const ids = {};

const vnetPath = (name, rest = '') =>
  `/subscriptions/${sub}/resourceGroups/${rg}/providers/Microsoft.Network/virtualNetworks/${name}${rest}?api-version=2023-04-01`;
const subnetId = (vnet, subnet) =>
  `/subscriptions/${sub}/resourceGroups/${rg}/providers/Microsoft.Network/virtualNetworks/${vnet}/subnets/${subnet}`;
const sh = (cmd) => spawnSync('sh', ['-c', cmd], { encoding: 'utf8', timeout: 20000 });
const netns = (id) => `/var/run/netns/skiff-n1-${id}`;
// A host program inside a group's network namespace: what its containers' traffic does.
const inNetns = (id, cmd) => sh(`ip netns exec skiff-n1-${id} ${cmd}`);
const fetchIn = (id, url) => inNetns(id, `curl -s -m 3 ${url}`);

const networkEnv = () => ({
  SKIFF_NETWORK_AGENT: 'it-host', SKIFF_NETWORK_DEFAULT_POOL: '10.252.0.0/16', SKIFF_NETWORK_DEFAULT_PREFIX_LENGTH: '24',
  SKIFF_NETWORK_PUBLIC_POOL: '127.101.0.0/24', SKIFF_DNS_LISTEN: `127.0.0.1:${dnsPort}`, SKIFF_NETWORK_MASQUERADE: 'false',
  SKIFF_DNS_UPSTREAMS: 'none' });  // tests send nothing off this host

function httpGet(host, port, headers = {}) {
  return new Promise((resolve) => {
    const req = http.get({ host, port, path: '/', headers, timeout: 3000 }, (res) => {
      let body = '';
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('error', (e) => resolve({ status: 0, body: String(e) }));
    req.on('timeout', () => req.destroy(new Error('timeout')));
  });
}

function group({ image = 'httpd', subnet, ip, restartPolicy = 'Always' } = {}) {
  const body = {
    location: 'local',
    properties: {
      osType: 'Linux', restartPolicy,
      containers: [{ name: 'main', properties: {
        image: `${infra.env.REGISTRY}/skiff/${image}:1`, ports: [{ port: 80 }],
        resources: { requests: { cpu: 0.1, memoryInGB: 0.1 } } } }],
    },
  };
  if (subnet) body.properties.subnetIds = [{ id: subnet }];
  if (ip) body.properties.ipAddress = { ports: [{ port: 80, protocol: 'TCP' }], ...ip };
  return body;
}

async function create(name, body) {
  const res = await request(gw, 'PUT', groupPath(sub, rg, name), { token, body });
  assert.equal(res.status, 201, res.body);
  const id = kit.sql(`SELECT group_id FROM gateway.container_groups WHERE name = '${name}' AND subscription_id = '${sub}'`);
  ids[name] = id;
  await until(`${name} running`, () => kit.running('n1').includes(id), 60000);
  return res.json;
}

// Skiff bridges on the host (name skb + 12 hex digits).
const skiffBridges = () => sh('ip -o link show type bridge').stdout.split('\n')
  .map((l) => l.match(/: (skb[0-9a-f]{12})[:@]/)?.[1]).filter(Boolean);
let bridgesBefore = [];  // another installation's on this host (a local stack): not ours to judge

before(async () => {
  bridgesBefore = skiffBridges();
  infra = startInfra({ registry: true });
  kit = serviceKit(infra);
  kit.spawn('network', 'services/network/skiff-network', { ...networkEnv(), SKIFF_NETWORK_RECONCILE_SECONDS: '2' });
  kit.startScheduler('sched');
  kit.startNode('n1', 4, { SKIFF_NETWORK_AGENT: 'it-host' });
  gw = await new Gateway(infra, { SKIFF_GATEWAY_NETWORK: 'true', SKIFF_INGRESS_LISTEN: '127.0.0.1:0',
    SKIFF_INGRESS_PORT_FILE: join(infra.dir, 'ingress.port') }).start();
  ingressPort = Number(await until('ingress port', () => existsSync(join(infra.dir, 'ingress.port')) &&
    readFileSync(join(infra.dir, 'ingress.port'), 'utf8').trim()));
  token = gw.createToken(sub);
});

after(async () => {
  await gw?.stop();
  await kit?.stopAll();
  kit?.cleanNodes(['n1', 'n2']);
  // The network service reconciles once more, so the test leaves no bridges or rules behind.
  if (kit) {
    kit.spawn('network-cleanup', 'services/network/skiff-network', networkEnv());
    await until('test networks removed', () => kit.sql(`SELECT count(*) FROM network.attachments`) === '0', 20000)
      .catch(() => {});
    await kit.stop('network-cleanup');
  }
  infra?.stop();
});

test('virtual networks: create, read, list; bad address plans get ARM errors', async () => {
  let res = await request(gw, 'PUT', vnetPath('vnet-a'), { token, body: {
    location: 'local', properties: { addressSpace: { addressPrefixes: ['10.61.0.0/16'] },
      subnets: [{ name: 's1', properties: { addressPrefix: '10.61.1.0/24' } },
        { name: 's2', properties: { addressPrefix: '10.61.2.0/24' } }] } } });
  assert.equal(res.status, 201, res.body);
  assert.equal(res.json.properties.subnets[0].id, subnetId('vnet-a', 's1'));
  res = await request(gw, 'PUT', vnetPath('vnet-b'), { token, body: {
    location: 'local', properties: { addressSpace: { addressPrefixes: ['10.62.0.0/16'] },
      subnets: [{ name: 's1', properties: { addressPrefix: '10.62.1.0/24' } }] } } });
  assert.equal(res.status, 201, res.body);
  assert.equal((await request(gw, 'GET', vnetPath('vnet-a', '/subnets/s2'), { token })).json.properties.addressPrefix,
    '10.61.2.0/24');
  const list = await request(gw, 'GET',
    `/subscriptions/${sub}/providers/Microsoft.Network/virtualNetworks?api-version=2023-04-01`, { token });
  assert.deepEqual(list.json.value.map((v) => v.name).sort(), ['vnet-a', 'vnet-b']);

  const overlap = await request(gw, 'PUT', vnetPath('vnet-c'), { token, body: {
    location: 'local', properties: { addressSpace: { addressPrefixes: ['10.61.0.0/16'] },
      subnets: [{ name: 's1', properties: { addressPrefix: '10.61.1.0/25' } }] } } });
  assert.equal(overlap.status, 409);
  assert.equal(overlap.json.error.code, 'NetcfgSubnetRangesOverlap');
  const outside = await request(gw, 'PUT', vnetPath('vnet-c'), { token, body: {
    location: 'local', properties: { addressSpace: { addressPrefixes: ['10.63.0.0/16'] },
      subnets: [{ name: 's1', properties: { addressPrefix: '10.64.0.0/24' } }] } } });
  assert.equal(outside.status, 400);
  assert.equal(outside.json.error.code, 'NetcfgSubnetRangeOutsideVnet');
  assert.equal((await request(gw, 'PUT', vnetPath('vnet-c'), { token, body: '{' })).status, 400);
  assert.equal((await request(gw, 'GET', vnetPath('nope'), { token })).status, 404);
});

test('a subnet of another subscription, or one that does not exist, is refused', async () => {
  const foreign = `/subscriptions/${randomUUID()}/resourceGroups/x/providers/Microsoft.Network/virtualNetworks/v/subnets/s`;
  let res = await request(gw, 'PUT', groupPath(sub, rg, 'foreign'), { token, body: group({ subnet: foreign }) });
  assert.equal(res.status, 403, res.body);
  assert.equal(res.json.error.code, 'LinkedAuthorizationFailed');
  res = await request(gw, 'PUT', groupPath(sub, rg, 'missing'), { token, body: group({ subnet: subnetId('vnet-a', 'nope') }) });
  assert.equal(res.status, 400);
  assert.equal(res.json.error.code, 'InvalidResourceReference');
  assert.equal((await request(gw, 'GET', groupPath(sub, rg, 'foreign'), { token })).status, 404);  // nothing stored
});

test('groups in one virtual network exchange HTTP and resolve each other by name; another network cannot reach them', async () => {
  const web = await create('web-a', group({ subnet: subnetId('vnet-a', 's1'), ip: { type: 'Private' } }));
  assert.equal(web.properties.ipAddress.ip, '10.61.1.4');
  await create('client-a', group({ image: 'sleeper', subnet: subnetId('vnet-a', 's2') }));
  await create('client-b', group({ image: 'sleeper', subnet: subnetId('vnet-b', 's1') }));
  const view = (await request(gw, 'GET', groupPath(sub, rg, 'client-a'), { token })).json;
  assert.equal(view.properties.ipAddress.ip, '10.61.2.4');
  await until('network events in the view', async () => {
    const v = (await request(gw, 'GET', groupPath(sub, rg, 'client-a'), { token })).json;
    const names = (v.properties.instanceView?.events ?? []).map((e) => e.name);
    return names.includes('IPAssigned') && names.includes('NetworkAttached');
  });

  // Across subnets of one network (routed through the host), by address and by name.
  const ok = fetchIn(ids['client-a'], 'http://10.61.1.4/');
  assert.match(ok.stdout, /Hello from Skiff/, ok.stderr);
  const lookup = inNetns(ids['client-a'], 'busybox nslookup web-a 10.61.2.1');
  assert.match(lookup.stdout, /10\.61\.1\.4/, lookup.stdout + lookup.stderr);
  const resolv = sh(`cat ${kit.nodeRoot('n1')}/sandboxes/${ids['client-a']}/resolv.conf`).stdout;
  assert.match(resolv, /nameserver 10\.61\.2\.1/);
  assert.match(resolv, /search skiff\.internal/);
  const other = inNetns(ids['client-b'], 'busybox nslookup web-a 10.62.1.1');
  assert.doesNotMatch(other.stdout, /10\.61\.1\.4/);

  // Another virtual network: dropped between the bridges.
  const blocked = fetchIn(ids['client-b'], 'http://10.61.1.4/');
  assert.notEqual(blocked.status, 0);
  assert.doesNotMatch(blocked.stdout, /Hello/);
  // Nor may a group reach the host's own services through its gateway (NATS, Postgres…).
  const natsPort = new URL(infra.env.NATS_URL).port;
  const host = inNetns(ids['client-a'], `busybox nc -w 2 10.61.2.1 ${natsPort} </dev/null`);
  assert.doesNotMatch(host.stdout, /INFO/);
  // Here NATS, Postgres and the gateway listen on loopback only; on a multi-host node they listen
  // on every address. A host service that does: the host reaches it at the bridge's address, the
  // group (in its namespace) does not.
  const port = 21000 + Math.floor(Math.random() * 20000);
  const service = spawn('python3', ['-m', 'http.server', String(port), '--bind', '0.0.0.0'], { stdio: 'ignore' });
  try {
    await until('the host service answers the host', () => sh(`curl -s -m 2 http://10.61.2.1:${port}/`).status === 0);
    const probe = fetchIn(ids['client-a'], `http://10.61.2.1:${port}/`);
    assert.notEqual(probe.status, 0, probe.stdout);
    const across = fetchIn(ids['client-b'], `http://10.61.2.1:${port}/`);
    assert.notEqual(across.status, 0, across.stdout);
  } finally {
    service.kill();
  }
  // Another network's DNS responder answers nothing to this network (no name leaks across).
  const foreign = inNetns(ids['client-a'], 'busybox nslookup web-a 10.62.1.1');
  assert.doesNotMatch(foreign.stdout, /10\.61\.1\.4/);
});

test('a Public group answers on its public address (TCP and UDP), by its DNS name, and the label is unique', async () => {
  const body = group({ ip: { type: 'Public', dnsNameLabel: label } });
  body.properties.containers[0].properties.ports.push({ port: 5353, protocol: 'UDP' });
  body.properties.ipAddress.ports.push({ port: 5353, protocol: 'UDP' });
  const res = await create('web-pub', body);
  const { ip, fqdn } = res.properties.ipAddress;
  assert.match(ip, /^127\.101\.0\.\d+$/);
  assert.equal(fqdn, `${label}.local.skiff.test`);
  const page = await until('public port answering', async () => {
    const r = await httpGet(ip, 80);
    return r.status === 200 && r;
  });
  assert.match(page.body, /Hello from Skiff/);
  const resolver = new Resolver();
  resolver.setServers([`127.0.0.1:${dnsPort}`]);
  assert.deepEqual(await resolver.resolve4(fqdn), [ip]);
  await assert.rejects(resolver.resolve4(`nobody.local.skiff.test`), /ENOTFOUND/);

  // UDP is published too: an echo server in the group's namespace answers on the public address.
  const echo = spawn('ip', ['netns', 'exec', `skiff-n1-${ids['web-pub']}`, 'python3', '-c',
    "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',5353))\n" +
    "d,a=s.recvfrom(100)\ns.sendto(b'echo:'+d,a)"], { stdio: 'ignore' });
  try {
    const reply = await until('UDP echo through the public address', async () => {
      const socket = dgram.createSocket('udp4');
      const answer = await new Promise((resolve) => {
        const timer = setTimeout(() => resolve(null), 500);
        socket.on('message', (m) => { clearTimeout(timer); resolve(m.toString()); });
        socket.send('ping', 5353, ip);
      });
      socket.close();
      return answer;
    }, 10000);
    assert.equal(reply, 'echo:ping');
  } finally {
    echo.kill();
  }

  // The gateway's ingress routes by Host header (curl -H 'Host: <fqdn>').
  const routed = await httpGet('127.0.0.1', ingressPort, { host: fqdn });
  assert.equal(routed.status, 200, routed.body);
  assert.match(routed.body, /Hello from Skiff/);
  const unknown = await httpGet('127.0.0.1', ingressPort, { host: 'nobody.local.skiff.test' });
  assert.equal(unknown.status, 404);
  const curl = sh(`curl -s -m 5 -H 'Host: ${fqdn}' http://127.0.0.1:${ingressPort}/`);
  assert.match(curl.stdout, /Hello from Skiff/);

  const taken = await request(gw, 'PUT', groupPath(sub, rg, 'web-pub2'), { token,
    body: group({ ip: { type: 'Public', dnsNameLabel: label } }) });
  assert.equal(taken.status, 409);
  assert.equal(taken.json.error.code, 'DnsNameLabelNotAvailable');
  const tooMany = await request(gw, 'PUT', groupPath(sub, rg, 'web-pub2'), { token, body: {
    ...group(), properties: { ...group().properties, ipAddress: { type: 'Public',
      ports: [1, 2, 3, 4, 5, 6].map((port) => ({ port })) } } } });
  assert.equal(tooMany.status, 400);
});

test("groups without a subnet share their subscription's default network; another subscription cannot reach it", async () => {
  await create('neighbor', group({ image: 'sleeper' }));
  const privateIp = (n) => {
    const value = Number(kit.sql(`SELECT private_ip FROM network.claims WHERE group_id = '${ids[n]}'`));
    return [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255].join('.');
  };
  const target = `http://${privateIp('web-pub')}/`;
  assert.match(fetchIn(ids.neighbor, target).stdout, /Hello from Skiff/);
  const sub2 = randomUUID();
  const token2 = gw.createToken(sub2);
  const res = await request(gw, 'PUT', groupPath(sub2, rg, 'stranger'), { token: token2, body: group({ image: 'sleeper' }) });
  assert.equal(res.status, 201, res.body);
  ids.stranger = kit.sql(`SELECT group_id FROM gateway.container_groups WHERE name = 'stranger'`);
  await until('stranger running', () => kit.running('n1').includes(ids.stranger), 60000);
  assert.notEqual(privateIp('stranger').split('.').slice(0, 3).join('.'), privateIp('web-pub').split('.').slice(0, 3).join('.'));
  const blocked = fetchIn(ids.stranger, target);
  assert.doesNotMatch(blocked.stdout, /Hello/);
  assert.equal((await request(gw, 'DELETE', groupPath(sub2, rg, 'stranger'), { token: token2 })).status, 202);
});

test('restart and stop/start keep the address', async () => {
  const id = ids['web-a'];
  const command = (verb) => request(gw, 'POST',
    `/subscriptions/${sub}/resourceGroups/${rg}/providers/Microsoft.ContainerInstance/containerGroups/web-a/${verb}?api-version=2023-05-01`,
    { token });
  assert.equal((await command('restart')).status, 204);
  await until('web-a answering after restart', () => /Hello/.test(fetchIn(ids['client-a'], 'http://10.61.1.4/').stdout), 30000);
  assert.equal((await command('stop')).status, 204);
  await until('web-a stopped', () => !kit.running('n1').includes(id), 30000);
  assert.equal((await command('start')).status, 204);
  await until('web-a answering after start', () => /Hello/.test(fetchIn(ids['client-a'], 'http://10.61.1.4/').stdout), 30000);
  assert.equal((await request(gw, 'GET', groupPath(sub, rg, 'web-a'), { token })).json.properties.ipAddress.ip, '10.61.1.4');
});

test('delete frees the address, the label and the rules', async () => {
  const id = ids['web-pub'];
  const ip = kit.sql(`SELECT public_ip FROM network.claims WHERE group_id = '${id}'`);
  assert.notEqual(ip, '');
  assert.equal((await request(gw, 'DELETE', groupPath(sub, rg, 'web-pub'), { token })).status, 202);
  await until('claim released', () => kit.sql(`SELECT count(*) FROM network.claims WHERE group_id = '${id}'`) === '0', 30000);
  await until('attachment removed', () => kit.sql(`SELECT count(*) FROM network.attachments WHERE group_id = '${id}'`) === '0', 30000);
  const rules = sh('iptables-save').stdout;
  assert.doesNotMatch(rules, new RegExp(`skiff-n1-${id}`));
  // The label is free again.
  const again = await request(gw, 'PUT', groupPath(sub, rg, 'web-pub3'), { token,
    body: group({ ip: { type: 'Public', dnsNameLabel: label } }) });
  assert.equal(again.status, 201, again.body);
  assert.equal((await request(gw, 'DELETE', groupPath(sub, rg, 'web-pub3'), { token })).status, 202);
});

test('a crash of node and network service leaves no namespaces, veths, bridges or rules after reconcile', async () => {
  await kit.stop('node-n1', 'SIGKILL');
  await kit.stop('network', 'SIGKILL');
  // The host goes down with them: containers and namespaces are gone, the records are not.
  kit.cleanNodes(['n1']);
  assert.notEqual(kit.sql(`SELECT count(*) FROM network.attachments WHERE agent = 'it-host'`), '0');
  kit.spawn('network', 'services/network/skiff-network', networkEnv());
  await until('attachments reconciled', () => kit.sql(`SELECT count(*) FROM network.attachments WHERE agent = 'it-host'`) === '0', 30000);
  await until('bridges removed', () => skiffBridges().every((b) => bridgesBefore.includes(b)), 10000);
  const rules = sh('iptables-save').stdout;
  for (const name of Object.keys(ids)) assert.doesNotMatch(rules, new RegExp(`skiff-n1-${ids[name]}`));
  assert.doesNotMatch(rules, /-A CNI-FORWARD -s 10\.61\./);
  const ourVeths = sh('ip -o link show type veth').stdout.split('\n')
    .filter((l) => { const m = l.match(/master (skb[0-9a-f]{12})/); return m && !bridgesBefore.includes(m[1]); });
  assert.deepEqual(ourVeths, []);
  // The groups still exist, so they keep their addresses for when they run again.
  assert.equal(kit.sql(`SELECT count(*) FROM network.claims WHERE group_id = '${ids['web-a']}'`), '1');
});

test('a group placed again on another node after its node is lost keeps its address', async () => {
  kit.startNode('n2', 4, { SKIFF_NETWORK_AGENT: 'it-host' });
  await until('web-a and client-a running on n2', () =>
    kit.running('n2').includes(ids['web-a']) && kit.running('n2').includes(ids['client-a']), 60000);
  const page = await until('web-a answering at its old address from n2', () => {
    const r = sh(`ip netns exec skiff-n2-${ids['client-a']} curl -s -m 3 http://10.61.1.4/`);
    return /Hello/.test(r.stdout) && r.stdout;
  }, 30000);
  assert.match(page, /Hello from Skiff/);
  assert.equal((await request(gw, 'GET', groupPath(sub, rg, 'web-a'), { token })).json.properties.ipAddress.ip, '10.61.1.4');
});
