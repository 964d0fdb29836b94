// Azure's SDK (@azure/arm-containerinstance) through a group's whole life on the real stack
// (gateway, scheduler, node, registry): signed in as a service principal through the gateway's
// OAuth2 token endpoint, it creates and waits, reads instanceView and logs, execs over the
// WebSocket, stops, starts, restarts and deletes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import { ContainerInstanceManagementClient } from '@azure/arm-containerinstance';
import { startInfra, Gateway, until, serviceKit, request } from './harness.mjs';

let infra, gw, kit, client, credential;
const sub = randomUUID();

// A TokenCredential of the client-credentials grant, as ClientSecretCredential does it.
class ServicePrincipalCredential {
  constructor(principal) { this.principal = principal; this.requests = 0; }
  async getToken(scopes) {
    this.requests += 1;
    const form = new URLSearchParams({
      grant_type: 'client_credentials', client_id: this.principal.appId, client_secret: this.principal.password,
      scope: [].concat(scopes).join(' '),
    }).toString();
    const r = await request(gw, 'POST', '/adfs/oauth2/v2.0/token',
      { body: form, headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    if (r.status !== 200) throw new Error(`token endpoint: ${r.status} ${r.body}`);
    return { token: r.json.access_token, expiresOnTimestamp: Date.now() + r.json.expires_in * 1000 };
  }
}

before(async () => {
  infra = startInfra({ registry: true });
  infra.secretKey = randomBytes(32).toString('base64');
  kit = serviceKit(infra);
  gw = await new Gateway(infra).start();
  credential = new ServicePrincipalCredential(gw.createServicePrincipal(sub));
  client = new ContainerInstanceManagementClient(credential, sub, {
    endpoint: gw.url,
    credentialScopes: [`${gw.url}/.default`],
    tlsOptions: { ca: readFileSync(infra.env.CA, 'utf8') },
    retryOptions: { maxRetries: 0 },
  });
  kit.startScheduler('scheduler');
  kit.startNode('sdk-a', 2);
  await kit.nodeRegistered('sdk-a');
});

after(async () => {
  await kit?.stopAll();
  await gw?.stop();
  kit?.cleanNodes(['sdk-a']);
  infra?.stop();
});

// The output of an exec (the socket closes when the command exits).
function execOutput(answer) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(answer.webSocketUri, { ca: readFileSync(infra.env.CA) });
    let output = '';
    ws.on('open', () => ws.send(answer.password));
    ws.on('message', (data) => { output += data.toString(); });
    ws.on('close', (code, reason) => resolve({ output, code, reason: reason.toString() }));
    ws.on('error', reject);
  });
}

test('the SDK signs in and drives a group: create, wait, instanceView, logs, exec, stop, start, restart, delete', async () => {
  const wrong = new ContainerInstanceManagementClient(
    new ServicePrincipalCredential({ appId: randomUUID(), password: 'nope' }), sub,
    { endpoint: gw.url, credentialScopes: [`${gw.url}/.default`], tlsOptions: { ca: readFileSync(infra.env.CA, 'utf8') } });
  await assert.rejects(wrong.containerGroups.get('sdk', 'x'), /invalid_client/);

  const created = await client.containerGroups.beginCreateOrUpdateAndWait('sdk', 'app', {
    location: 'local',
    osType: 'Linux',
    restartPolicy: 'Always',
    containers: [{
      name: 'app',
      image: `${infra.env.REGISTRY}/skiff/sleeper:1`,
      resources: { requests: { cpu: 0.5, memoryInGB: 0.5 } },
      environmentVariables: [{ name: 'MODE', value: 'sdk' }],
    }],
  });
  assert.equal(created.provisioningState, 'Succeeded');
  assert.ok(credential.requests >= 1);

  const running = await until('running', async () => {
    const g = await client.containerGroups.get('sdk', 'app');
    return g.instanceView?.state === 'Running' && g;
  }, 30000);
  assert.equal(running.containers[0].instanceView.currentState.state, 'Running');
  assert.ok(running.containers[0].instanceView.events.some((e) => e.name === 'Started'));

  const job = await client.containerGroups.beginCreateOrUpdateAndWait('sdk', 'job', {
    location: 'local', osType: 'Linux', restartPolicy: 'Never',
    containers: [{ name: 'job', image: `${infra.env.REGISTRY}/skiff/hello:1`, resources: { requests: { cpu: 0.25, memoryInGB: 0.3 } } }],
  });
  assert.equal(job.provisioningState, 'Succeeded');
  const logs = await until('the job logged', async () => {
    const r = await client.containers.listLogs('sdk', 'job', 'job');
    return r.content?.includes('hello from skiff') && r;
  });
  assert.match(logs.content, /hello from skiff/);

  const answer = await client.containers.executeCommand('sdk', 'app', 'app', { command: '/bin/sh -c env' });
  assert.match(answer.webSocketUri, /^wss:\/\//);
  const exec = await execOutput(answer);
  assert.match(exec.output, /MODE=sdk/);
  assert.equal(exec.reason, 'exit code 0');

  await client.containerGroups.stop('sdk', 'app');
  await until('stopped', async () => (await client.containerGroups.get('sdk', 'app')).instanceView?.state === 'Stopped', 30000);
  await client.containerGroups.beginStartAndWait('sdk', 'app');
  await until('running again', async () => (await client.containerGroups.get('sdk', 'app')).instanceView?.state === 'Running', 30000);
  await client.containerGroups.beginRestartAndWait('sdk', 'app');
  await until('restarted', async () => {
    const g = await client.containerGroups.get('sdk', 'app');
    return g.instanceView?.events?.some((e) => e.name === 'Restarting') && g.instanceView.state === 'Running';
  }, 30000);

  await client.containerGroups.beginDeleteAndWait('sdk', 'app');
  await client.containerGroups.beginDeleteAndWait('sdk', 'job');
  await assert.rejects(client.containerGroups.get('sdk', 'app'), (e) => e.statusCode === 404);
  await until('nothing runs', () => kit.running('sdk-a').length === 0, 30000);
});
