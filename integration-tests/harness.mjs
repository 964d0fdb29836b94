// Test harness: real infrastructure via infra.sh, the real skiff-gateway binary, HTTPS helpers.
import { execFileSync, spawn } from 'node:child_process';
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
