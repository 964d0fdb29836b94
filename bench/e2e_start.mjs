// End-to-end start of a group on the real local stack (gateway, outbox, JetStream, scheduler,
// Postgres reservation, node, imagecache, runc), timed from the PUT until the node's `Started`
// event arrives on NATS, against references run in the same process:
//   warm: the image is cached; reference = a bare `runc run -d` of the very bundle Skiff made
//         (its config.json, its root filesystem, its network namespace), right after;
//   cold: a fresh image per round (its own single layer); reference = `skopeo copy` of a
//         twin image (same size, also never pulled) + `umoci unpack` + `runc run -d`.
// Rounds alternate which side goes first. Prints p50/p99 of each side and the ratios.
// usage: node bench/e2e_start.mjs [warm rounds=100] [cold rounds=10]   (root; run by bench/e2e_start)
import { createRequire } from 'node:module';
import { randomBytes, randomUUID } from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import https from 'node:https';
import { startInfra, Gateway, serviceKit, until, groupPath, request } from '../integration-tests/harness.mjs';

const { connect } = createRequire(new URL('../integration-tests/package.json', import.meta.url))('nats');
const warmRounds = Number(process.argv[2] ?? 100);
const coldRounds = Number(process.argv[3] ?? 10);
const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;
const quantile = (xs, q) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]; };

const infra = startInfra({ registry: true });
infra.secretKey = randomBytes(32).toString('base64');
const kit = serviceKit(infra);
const gw = await new Gateway(infra, { SKIFF_GATEWAY_QUOTA_GROUPS: '0', SKIFF_GATEWAY_CREATES_PER_5_MINUTES: '0',
  SKIFF_GATEWAY_CREATES_PER_HOUR: '0' }).start();
const sub = randomUUID();
const token = gw.createToken(sub);
const agent = new https.Agent({ keepAlive: true });
kit.startScheduler('scheduler');
kit.startNode('bench', 2);  // default node settings: a standby pool of 2 spare sandboxes
const nc = await connect({ servers: infra.env.NATS_URL });
const work = mkdtempSync('/tmp/skiff-e2e-');
const runcRoot = join(work, 'runc');

// Resolves when a Started event naming `name` arrives.
const started = new Map();
const sub_ = nc.subscribe('skiff.events.container.started.*');
(async () => {
  for await (const m of sub_) {
    const text = Buffer.from(m.data).toString('latin1');
    for (const [name, resolve] of started) {
      if (text.includes(name)) { started.delete(name); resolve(process.hrtime.bigint()); }
    }
  }
})();

function group(name, image) {
  return { location: 'local', properties: { osType: 'Linux', restartPolicy: 'Always', containers: [{ name,
    properties: { image, resources: { requests: { cpu: 0.25, memoryInGB: 0.3 } } } }] } };
}

// Where the time of each start went (BENCH_TRACE=1): offsets of the group's events from the PUT.
const traces = [];
async function trace(name, putAt) {
  const view = await until('view', async () => {
    const r = await request(gw, 'GET', groupPath(sub, 'bench', name), { token, agent });
    return r.json?.properties?.containers?.[0]?.properties?.instanceView?.events?.some((e) => e.name === 'Started') && r.json;
  });
  const at = (e) => `${e.name} +${Date.parse(e.firstTimestamp) - putAt}`;
  const groupEvents = view.properties.instanceView?.events ?? [];
  traces.push([...groupEvents, ...view.properties.containers[0].properties.instanceView.events]
    .sort((a, b) => Date.parse(a.firstTimestamp) - Date.parse(b.firstTimestamp)).map(at).join(', '));
}

// PUT → Started, in ms.
async function skiffStart(name, image) {
  const seen = new Promise((resolve) => started.set(name, resolve));
  const putAt = Date.now();
  const t0 = process.hrtime.bigint();
  const put = await request(gw, 'PUT', groupPath(sub, 'bench', name), { token, body: group(name, image), agent });
  if (put.status !== 201) throw new Error(`PUT ${name}: ${put.status} ${put.body}`);
  let timer;
  const t1 = await Promise.race([seen, new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${name} did not start in 60 s`)), 60000);
  })]);
  clearTimeout(timer);
  if (process.env.BENCH_TRACE) await trace(name, putAt);
  return Number(t1 - t0) / 1e6;
}

async function skiffDelete(name) {
  const r = await request(gw, 'DELETE', groupPath(sub, 'bench', name), { token, agent });
  if (r.status !== 202) throw new Error(`DELETE ${name}: ${r.status}`);
  await until(`${name} gone`, () => kit.running('bench').length === 0, 30000);
}

const runc = (...args) => spawnSync('runc', ['--root', runcRoot, ...args], { stdio: 'ignore' }).status;

// A bare `runc run -d` of the bundle Skiff made for container `name` (same rootfs and
// namespace; its own cgroup and id).
function bareRunOf(name, id) {
  const sandboxes = join(kit.nodeRoot('bench'), 'sandboxes');
  const gid = readdirSync(sandboxes).find((g) => existsSync(join(sandboxes, g, 'containers', name, 'bundle/config.json')));
  const config = JSON.parse(readFileSync(join(sandboxes, gid, 'containers', name, 'bundle/config.json'), 'utf8'));
  config.linux.cgroupsPath = `/skiff-bench/${id}`;
  const bundle = join(work, id);
  mkdirSync(bundle, { recursive: true });
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(config));
  const t0 = process.hrtime.bigint();
  if (runc('run', '-d', '--bundle', bundle, id) !== 0) throw new Error('bare runc run -d failed');
  const took = ms(t0);
  runc('delete', '--force', id);
  rmSync(bundle, { recursive: true, force: true });
  return took;
}

// skopeo copy + umoci unpack + runc run -d of `image` (never pulled before).
function coldReference(image, id) {
  const layout = join(work, `layout-${id}`), bundle = join(work, `bundle-${id}`);
  const t0 = process.hrtime.bigint();
  execFileSync('skopeo', ['copy', '-q', '--src-tls-verify=false', `docker://${image}`, `oci:${layout}:img`]);
  execFileSync('umoci', ['unpack', '--image', `${layout}:img`, bundle], { stdio: 'ignore' });
  const config = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8'));
  config.process.terminal = false;  // detached, no console
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(config));
  if (runc('run', '-d', '--bundle', bundle, id) !== 0) throw new Error('cold runc run -d failed');
  const took = ms(t0);
  runc('delete', '--force', id);
  rmSync(layout, { recursive: true, force: true });
  rmSync(bundle, { recursive: true, force: true });
  return took;
}

// Fresh images: each one layer of its own (busybox plus a random file), the sleeper's config.
function buildColdImages(count) {
  const script = `
set -euo pipefail
layout=${work}/cold-oci
umoci init --layout "$layout"
for i in $(seq ${count}); do
  umoci new --image "$layout:empty"
  rm -rf ${work}/cb && umoci unpack --image "$layout:empty" ${work}/cb >/dev/null
  root=${work}/cb/rootfs; mkdir -p "$root/bin" "$root/tmp" "$root/etc"
  cp /bin/busybox "$root/bin/busybox"; for a in sh sleep; do ln -sf busybox "$root/bin/$a"; done
  head -c 4096 /dev/urandom > "$root/etc/unique"
  umoci repack --image "$layout:c$i" ${work}/cb >/dev/null
  umoci config --image "$layout:c$i" --tag "c$i" --config.env PATH=/bin \\
    --config.cmd /bin/sh --config.cmd -c --config.cmd 'trap "exit 0" TERM; while true; do sleep 1; done'
  skopeo copy -q --dest-tls-verify=false "oci:$layout:c$i" "docker://${infra.env.REGISTRY}/bench/cold$i:1"
done
rm -rf ${work}/cb "$layout"`;
  execFileSync('bash', ['-c', script], { stdio: 'inherit' });
}

function report(label, skiff, ref, refLabel, target) {
  const p50 = quantile(skiff, 0.5), p99 = quantile(skiff, 0.99), r50 = quantile(ref, 0.5), r99 = quantile(ref, 0.99);
  console.log(`${label} (${skiff.length} rounds): Skiff PUT->Running p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms; ` +
    `${refLabel} p50 ${r50.toFixed(1)} ms, p99 ${r99.toFixed(1)} ms; ratio p50 ${(p50 / r50).toFixed(2)}, ` +
    `p99 ${(p99 / r99).toFixed(2)} (target <= ${target})`);
}

try {
  await until('node registered', () => {
    try { return kit.sql("SELECT count(*) FROM scheduler.nodes WHERE node_id = 'bench'") === '1'; } catch { return false; }
  }, 30000);
  const sleeper = `${infra.env.REGISTRY}/skiff/sleeper:1`;
  // Warm-up: the image into the cache, connections and prepared statements everywhere.
  for (let i = 0; i < 3; i++) { await skiffStart(`warmup${i}`, sleeper); bareRunOf(`warmup${i}`, `warmup-bare${i}`); await skiffDelete(`warmup${i}`); }

  const warmSkiff = [], warmBare = [];
  for (let i = 0; i < warmRounds; i++) {
    // The reference needs Skiff's bundle, so it runs second; its container shares the rootfs.
    warmSkiff.push(await skiffStart(`w${i}`, sleeper));
    warmBare.push(bareRunOf(`w${i}`, `bare${i}`));
    await skiffDelete(`w${i}`);
  }
  report('warm image', warmSkiff, warmBare, 'bare runc run -d of the same bundle', 1.5);
  for (const line of traces.splice(0)) console.log(`  trace: ${line}`);

  if (coldRounds > 0) {
    buildColdImages(2 * coldRounds);
    const coldSkiff = [], coldRef = [];
    for (let i = 0; i < coldRounds; i++) {
      const mine = `${infra.env.REGISTRY}/bench/cold${2 * i + 1}:1`, theirs = `${infra.env.REGISTRY}/bench/cold${2 * i + 2}:1`;
      if (i % 2 === 0) {
        coldSkiff.push(await skiffStart(`c${i}`, mine));
        coldRef.push(coldReference(theirs, `cold${i}`));
      } else {
        coldRef.push(coldReference(theirs, `cold${i}`));
        coldSkiff.push(await skiffStart(`c${i}`, mine));
      }
      await skiffDelete(`c${i}`);
    }
    report('cold image', coldSkiff, coldRef, 'skopeo copy + umoci unpack + runc run -d', 1.0);
    for (const line of traces.splice(0)) console.log(`  trace: ${line}`);
  }
} finally {
  await nc.close();
  agent.destroy();
  await kit.stopAll();
  await gw.stop();
  kit.cleanNodes(['bench']);
  infra.stop();
  rmSync(work, { recursive: true, force: true });
}
process.exit(0);
