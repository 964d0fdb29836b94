// Test harness: real infrastructure via infra.sh, the real skiff-gateway binary, HTTPS helpers.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import https from 'node:https';
import { randomUUID, randomBytes } from 'node:crypto';

const here = dirname(fileURLToPath(import.meta.url));
export const gatewayBin = process.env.SKIFF_GATEWAY_BIN ?? join(here, '../build/dev/services/gateway/skiff-gateway');

export function startInfra({ registry = false } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'skiff-it-'));
  execFileSync(join(here, 'infra.sh'), ['start', dir, ...(registry ? ['--registry'] : [])], { stdio: 'inherit' });
  const env = Object.fromEntries(
    readFileSync(join(dir, 'infra.env'), 'utf8').trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  return { dir, env, stop: () => execFileSync(join(here, 'infra.sh'), ['stop', dir], { stdio: 'inherit' }) };
}

export class Gateway {
  constructor(infra, extraEnv = {}) {
    this.infra = infra;
    this.portFile = join(infra.dir, `gateway-${randomUUID()}.port`);
    this.env = {
      ...process.env,
      SKIFF_STORE_URL: infra.env.STORE_URL,
      SKIFF_BUS_URL: infra.env.NATS_URL,
      SKIFF_GATEWAY_LISTEN: '127.0.0.1:0',
      SKIFF_GATEWAY_PORT_FILE: this.portFile,
      SKIFF_GATEWAY_TLS_CERT: infra.env.TLS_CERT,
      SKIFF_GATEWAY_TLS_KEY: infra.env.TLS_KEY,
      SKIFF_GATEWAY_SECRET_KEY: infra.secretKey ??= randomBytes(32).toString('base64'),
      SKIFF_LOG_LEVEL: 'warn',
      // Only the network tests run the network service; elsewhere groups need no addresses.
      SKIFF_GATEWAY_NETWORK: 'false',
      ...extraEnv,
    };
  }

  async start() {
    rmSync(this.portFile, { force: true });
    this.proc = spawn(gatewayBin, ['serve'], { env: this.env, stdio: ['ignore', 'inherit', 'inherit'] });
    this.exited = new Promise((resolve) => this.proc.on('exit', (code, signal) => resolve({ code, signal })));
    const deadline = Date.now() + 30000;
    while (!existsSync(this.portFile) || readFileSync(this.portFile, 'utf8').trim() === '') {
      if (Date.now() > deadline) throw new Error('gateway did not start');
      if (this.proc.exitCode !== null) throw new Error(`gateway exited with ${this.proc.exitCode}`);
      await sleep(50);
    }
    this.port = Number(readFileSync(this.portFile, 'utf8').trim());
    this.url = `https://127.0.0.1:${this.port}`;
    return this;
  }

  async stop(signal = 'SIGTERM') {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return this.exited;
    this.proc.kill(signal);
    return this.exited;
  }

  createToken(subscription) {
    return execFileSync(gatewayBin, ['create-token', '--subscription', subscription], { env: this.env })
      .toString().trim();
  }
  // { appId, password, tenant }: a service principal of `subscription` (az login, ClientSecretCredential).
  createServicePrincipal(subscription) {
    return JSON.parse(execFileSync(gatewayBin, ['create-service-principal', '--subscription', subscription],
      { env: this.env }).toString());
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// One HTTPS request; resolves { status, headers, body, json }.
export function request(gw, method, path, { token, body, headers = {}, agent } = {}) {
  const payload = body === undefined ? undefined : (typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = https.request({
      host: '127.0.0.1', port: gw.port, method, path,
      ca: readFileSync(gw.infra.env.CA), agent,
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(payload !== undefined ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {}),
        ...headers,
      },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        let json;
        try { json = text ? JSON.parse(text) : undefined; } catch { json = undefined; }
        resolve({ status: res.statusCode, headers: res.headers, body: text, json });
      });
    });
    req.on('error', reject);
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}

export const groupPath = (sub, rg, name, version = '2023-05-01') =>
  `/subscriptions/${sub}/resourceGroups/${rg}/providers/Microsoft.ContainerInstance/containerGroups/${name}?api-version=${version}`;

export function helloGroup(registry = '127.0.0.1:5000') {
  return {
    location: 'local',
    tags: { suite: 'integration' },
    properties: {
      osType: 'Linux',
      restartPolicy: 'Never',
      containers: [{
        name: 'hello',
        properties: {
          image: `${registry}/skiff/hello:1`,
          resources: { requests: { cpu: 0.5, memoryInGB: 0.5 } },
          environmentVariables: [{ name: 'GREETING', value: 'hi' }, { name: 'API_KEY', secureValue: 'do-not-leak-42' }],
        },
      }],
    },
  };
}

// Infrastructure plus one gateway for a test file: `await start()` in before(), `stop()` in after().
export function gatewayStack({ gatewayEnv = {} } = {}) {
  const ctx = { sub: randomUUID() };
  ctx.start = async () => {
    ctx.infra = startInfra();
    ctx.gw = await new Gateway(ctx.infra, gatewayEnv).start();
    ctx.token = ctx.gw.createToken(ctx.sub);
    return ctx;
  };
  ctx.stop = async () => {
    await ctx.gw?.stop();
    ctx.infra?.stop();
  };
  return ctx;
}

// Polls `check` every 200 ms until it returns something truthy (returned), or fails the test.
export async function until(what, check, ms = 20000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();  // a check may be async
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

// The back-end services of a test file as real processes (schedulers, nodes with their image
// caches, billing) against `infra`, plus the probes the tests use on them.
export function serviceKit(infra) {
  const build = process.env.SKIFF_BUILD_DIR ?? join(here, '../build/dev');
  const procs = {};
  const common = () => ({ ...process.env, SKIFF_BUS_URL: infra.env.NATS_URL, SKIFF_STORE_URL: infra.env.STORE_URL,
    SKIFF_LOG_LEVEL: 'warn', SKIFF_METRICS_LISTEN: '' });
  const nodeRoot = (id) => join(infra.dir, `node-${id}`);
  const kit = {
    build, procs, nodeRoot,
    spawn(name, bin, env = {}) {
      procs[name] = spawn(join(build, bin), ['serve'], { stdio: ['ignore', 'inherit', 'inherit'], env: { ...common(), ...env } });
      return procs[name];
    },
    startScheduler(name, env = {}) {
      // Lost after 5 s of silence (10 missed heartbeats): under CI load (ASan, two cores) 3 s
      // marked busy nodes lost now and then and moved their groups.
      return kit.spawn(name, 'services/scheduler/skiff-scheduler', { SKIFF_SCHEDULER_NODE_LOST_AFTER_MS: '5000',
        SKIFF_SCHEDULER_TICK_MS: '200', SKIFF_SCHEDULER_REFRESH_MS: '1000', ...env });
    },
    startNode(id, cpu, env = {}) {
      if (!procs[`cache-${id}`]) {
        kit.spawn(`cache-${id}`, 'services/imagecache/skiff-imagecache', { SKIFF_IMAGECACHE_ROOT: join(infra.dir, `cache-${id}`),
          SKIFF_IMAGECACHE_NODE_ID: id, SKIFF_IMAGECACHE_SECRET_KEY: infra.secretKey });
      }
      return kit.spawn(`node-${id}`, 'services/node/skiff-node', { SKIFF_NODE_ROOT: nodeRoot(id), SKIFF_NODE_NODE_ID: id,
        SKIFF_NODE_CPU: String(cpu), SKIFF_NODE_MEMORY_GB: '8', SKIFF_NODE_HOST_TAG: `skiff-${id}`,
        SKIFF_NODE_HEARTBEAT_MS: '500', SKIFF_NODE_SECRET_KEY: infra.secretKey, SKIFF_NODE_STOP_GRACE_MS: '1000',
        SKIFF_NODE_SECCOMP_PROFILE: join(here, '../infra/seccomp/default.json'),
        // The stack's nodes share one host: they claim user namespace id ranges in one place.
        SKIFF_NODE_ID_RANGE_CLAIMS: join(infra.dir, 'id-ranges'), ...env });
    },
    async stop(name, signal = 'SIGTERM') {
      const proc = procs[name];
      if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise((r) => proc.on('exit', r));
      proc.kill(signal);
      await exited;
    },
    async stopAll() {
      for (const name of Object.keys(procs).filter((n) => n.startsWith('node-'))) await kit.stop(name);
      for (const name of Object.keys(procs)) await kit.stop(name);
    },
    sql: (query) => execFileSync('psql', [infra.env.STORE_URL, '-Atc', query]).toString().trim(),
    // Resolves once the scheduler knows node `id` (it has heartbeated and been recorded).
    nodeRegistered: (id) => until(`node ${id} registered`, () => {
      try { return kit.sql(`SELECT count(*) FROM scheduler.nodes WHERE node_id = '${id}'`) === '1'; } catch { return false; }
    }, 30000),
    // Group ids of the containers running under a node's runc root (they outlive a killed node).
    running(id) {
      const out = spawnSync('runc', ['--root', join(nodeRoot(id), 'runc'), 'list', '--format', 'json']);
      const list = JSON.parse(out.stdout.toString() || 'null') ?? [];
      return list.filter((c) => c.status === 'running').map((c) => c.id.split('.')[0]);
    },
    // Whatever a failed test left behind on these nodes: containers, mounts, namespaces.
    cleanNodes(ids) {
      for (const id of ids) {
        // MicroVM groups' VMMs and virtiofsd (their command lines name the node's microvm/ root).
        spawnSync('pkill', ['-KILL', '-f', `${nodeRoot(id)}/microvm/`]);
        spawnSync('sh', ['-c', `for c in $(runc --root ${nodeRoot(id)}/runc list -q 2>/dev/null); do runc --root ${nodeRoot(id)}/runc kill $c KILL; sleep 0.2; runc --root ${nodeRoot(id)}/runc delete -f $c; done; ` +
          `umount -l ${nodeRoot(id)}/microvm/sandboxes/*/containers/*/rootfs 2>/dev/null; ` +
          `umount -l ${infra.dir}/cache-${id}/containers/*/rootfs 2>/dev/null; for n in /var/run/netns/skiff-${id}-*; do umount -l $n 2>/dev/null; rm -f $n; done; true`]);
      }
    },
    sleeperGroup({ cpu = 0.5, memoryInGB = 0.3, priority = 'Regular', restartPolicy = 'Always' } = {}) {
      return {
        location: 'local',
        properties: {
          osType: 'Linux', restartPolicy, priority,
          containers: [{ name: 'main', properties: {
            image: `${infra.env.REGISTRY}/skiff/sleeper:1`, resources: { requests: { cpu, memoryInGB } } } }],
        },
      };
    },
  };
  return kit;
}
