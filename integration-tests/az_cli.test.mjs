// The Azure CLI (Debian's azure-cli) against the real stack, as a custom cloud: `az cloud
// register` reads the gateway's metadata, `az login --service-principal --tenant adfs` signs in
// through its OpenID discovery and OAuth2 token endpoint, then `az container` creates, shows,
// lists, reads logs, execs (in a pty), stops, starts, restarts, exports and deletes. Sign-in and
// API refusals come back as clear errors.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID, randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startInfra, Gateway, until, serviceKit } from './harness.mjs';

let infra, gw, kit, env, principal;
const scratch = [];  // temporary directories, removed after
const tempDir = (prefix) => { const d = mkdtempSync(join(tmpdir(), prefix)); scratch.push(d); return d; };
const sub = randomUUID();

// One az command; { code, out, err }. `tty`: run it inside a pseudo-terminal (exec needs one).
function az(args, { tty = false, input } = {}) {
  const quoted = ['az', ...args].map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(' ');
  const r = tty
    ? spawnSync('script', ['-qec', `stty rows 24 cols 80; ${quoted}`, '/dev/null'], { env, input, timeout: 120000 })
    : spawnSync('az', args, { env, input, timeout: 120000 });
  return { code: r.status, out: r.stdout?.toString() ?? '', err: r.stderr?.toString() ?? '' };
}

before(async () => {
  assert.equal(spawnSync('az', ['version']).status, 0, 'the azure-cli package is needed (scripts/bootstrap installs it)');
  infra = startInfra({ registry: true });
  infra.secretKey = randomBytes(32).toString('base64');
  kit = serviceKit(infra);
  gw = await new Gateway(infra).start();
  principal = gw.createServicePrincipal(sub);
  env = {
    PATH: process.env.PATH,
    HOME: tempDir('skiff-az-home-'),
    AZURE_CONFIG_DIR: tempDir('skiff-az-'),
    AZURE_CORE_COLLECT_TELEMETRY: 'false',
    AZURE_CORE_NO_COLOR: 'true',
    REQUESTS_CA_BUNDLE: infra.env.CA,
    WEBSOCKET_CLIENT_CA_BUNDLE: infra.env.CA,
  };
  kit.startScheduler('scheduler');
  kit.startNode('az-a', 2);
  await kit.nodeRegistered('az-a');
});

after(async () => {
  await kit?.stopAll();
  await gw?.stop();
  kit?.cleanNodes(['az-a']);
  infra?.stop();
  for (const d of scratch) rmSync(d, { recursive: true, force: true });
});

test('az signs in as a service principal and drives a group through its whole life', async () => {
  const registered = az(['cloud', 'register', '--name', 'skiff', '--endpoint-resource-manager', `${gw.url}/`]);
  assert.equal(registered.code, 0, registered.err);
  assert.equal(az(['cloud', 'set', '--name', 'skiff']).code, 0);

  const wrong = az(['login', '--service-principal', '-u', principal.appId, '-p', 'not-the-secret', '--tenant', 'adfs']);
  assert.notEqual(wrong.code, 0);
  assert.match(wrong.err, /invalid_client|Invalid client secret/);

  const login = az(['login', '--service-principal', '-u', principal.appId, '-p', principal.password, '--tenant', 'adfs']);
  assert.equal(login.code, 0, login.err);
  const accounts = JSON.parse(login.out);
  assert.equal(accounts.length, 1);
  assert.equal(accounts[0].id, sub);
  assert.equal(accounts[0].tenantId, 'adfs');
  assert.equal(accounts[0].user.type, 'servicePrincipal');

  const image = `${infra.env.REGISTRY}/skiff/sleeper:1`;
  const created = az(['container', 'create', '-g', 'azrg', '-n', 'web', '--image', image, '--cpu', '0.5',
    '--memory', '0.5', '-e', 'MODE=az', '--secure-environment-variables', 'KEY=hidden', '-o', 'json']);
  assert.equal(created.code, 0, created.err);
  const group = JSON.parse(created.out);
  assert.equal(group.provisioningState, 'Succeeded');
  assert.equal(group.location, 'local');  // from the resource group, as az reads it
  assert.equal(group.containers[0].environmentVariables[1].secureValue, null);

  const state = await until('running', () => {
    const r = az(['container', 'show', '-g', 'azrg', '-n', 'web', '--query', 'instanceView.state', '-o', 'tsv']);
    return r.out.trim() === 'Running' && r;
  }, 30000);
  assert.equal(state.code, 0);
  const shown = JSON.parse(az(['container', 'show', '-g', 'azrg', '-n', 'web', '-o', 'json']).out);
  assert.equal(shown.containers[0].instanceView.currentState.state, 'Running');
  assert.ok(shown.containers[0].instanceView.events.some((e) => e.name === 'Started'));

  const listed = az(['container', 'list', '-o', 'table']);
  assert.equal(listed.code, 0, listed.err);
  assert.match(listed.out, /web\s+azrg\s+Running\s+.*skiff\/sleeper:1/);  // the status column is instanceView.state

  const job = az(['container', 'create', '-g', 'azrg', '-n', 'job', '--image', `${infra.env.REGISTRY}/skiff/hello:1`,
    '--restart-policy', 'Never', '--cpu', '0.25', '--memory', '0.3', '-o', 'none']);
  assert.equal(job.code, 0, job.err);
  await until('the job wrote its log', () => az(['container', 'logs', '-g', 'azrg', '-n', 'job']).out.includes('hello from skiff'));

  // attach: the ended job's state and events, then it returns (az polls every few seconds).
  const attached = az(['container', 'attach', '-g', 'azrg', '-n', 'job']);
  assert.equal(attached.code, 0, attached.err);
  assert.match(attached.out, /Container 'job' is in state 'Terminated'/);
  assert.match(attached.out, /Started container job/);

  const exec = az(['container', 'exec', '-g', 'azrg', '-n', 'web', '--exec-command', '/bin/echo exec-$MODE'], { tty: true });
  assert.equal(exec.code, 0, exec.err + exec.out);
  assert.match(exec.out, /exec-\$MODE/);  // ACI passes the command as is: no shell expands it
  const shell = az(['container', 'exec', '-g', 'azrg', '-n', 'web', '--exec-command', '/bin/sh -c env'], { tty: true });
  assert.match(shell.out, /MODE=az/);

  assert.equal(az(['container', 'stop', '-g', 'azrg', '-n', 'web']).code, 0);
  await until('stopped', () =>
    az(['container', 'show', '-g', 'azrg', '-n', 'web', '--query', 'instanceView.state', '-o', 'tsv']).out.trim() === 'Stopped', 30000);
  assert.equal(kit.running('az-a').length, 0);
  const started = az(['container', 'start', '-g', 'azrg', '-n', 'web']);
  assert.equal(started.code, 0, started.err);
  await until('running again', () => kit.running('az-a').length === 1, 30000);
  const restarted = az(['container', 'restart', '-g', 'azrg', '-n', 'web']);
  assert.equal(restarted.code, 0, restarted.err);
  await until('restart shows', () => az(['container', 'show', '-g', 'azrg', '-n', 'web', '-o', 'json']).out.includes('Restarting'));

  const file = join(tempDir('skiff-az-export-'), 'web.yaml');
  const exported = az(['container', 'export', '-g', 'azrg', '-n', 'web', '-f', file]);
  assert.equal(exported.code, 0, exported.err);
  const yaml = readFileSync(file, 'utf8');
  assert.match(yaml, /image: .*skiff\/sleeper:1/);
  assert.match(yaml, /name: web/);

  for (const name of ['job', 'web']) {
    const deleted = az(['container', 'delete', '-g', 'azrg', '-n', name, '--yes', '-o', 'none']);
    assert.equal(deleted.code, 0, deleted.err);
  }
  await until('nothing runs', () => kit.running('az-a').length === 0, 30000);
  const gone = az(['container', 'show', '-g', 'azrg', '-n', 'web']);
  assert.notEqual(gone.code, 0);
  assert.match(gone.err, /ResourceNotFound/);
});

test('az shows API refusals as errors', async () => {
  const bad = az(['container', 'create', '-g', 'azrg', '-n', 'Bad_Name', '--image', 'x', '-o', 'none']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.err, /InvalidContainerGroupName|invalid/i);
  const huge = az(['container', 'create', '-g', 'azrg', '-n', 'huge', '--image', `${infra.env.REGISTRY}/skiff/hello:1`,
    '--cpu', '64', '--memory', '1', '-o', 'none']);
  assert.notEqual(huge.code, 0);
  assert.match(huge.err, /cpu|Cpu|CPU/);
});
