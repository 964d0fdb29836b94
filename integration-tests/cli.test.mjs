// The `skiff` CLI against the real stack (gateway, scheduler, node, imagecache, billing, NATS,
// Postgres, registry): create with progress, show, list, logs, stop/start/restart, usage,
// export, delete; and each error path prints a clear message and exits non-zero.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID, randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startInfra, Gateway, until, serviceKit } from './harness.mjs';

let infra, gw, kit, env;
const sub = randomUUID();

function skiff(args, extraEnv = {}, cwd = tmpdir()) {
  const r = spawnSync(join(kit.build, 'services/cli/skiff'), args, { env: { PATH: process.env.PATH, ...env, ...extraEnv }, cwd });
  return { code: r.status, out: r.stdout.toString(), err: r.stderr.toString() };
}

before(async () => {
  infra = startInfra({ registry: true });
  infra.secretKey = randomBytes(32).toString('base64');
  kit = serviceKit(infra);
  gw = await new Gateway(infra).start();
  env = { SKIFF_URL: gw.url, SKIFF_TOKEN: gw.createToken(sub), SKIFF_SUBSCRIPTION: sub, SKIFF_CA: infra.env.CA };
  kit.startScheduler('scheduler');
  kit.startNode('cli-a', 2);
  kit.spawn('billing', 'services/billing/skiff-billing');
  await kit.nodeRegistered('cli-a');
});

after(async () => {
  await kit?.stopAll();
  await gw?.stop();
  kit?.cleanNodes(['cli-a']);
  infra?.stop();
});

test('create, show, list, logs, stop, start, restart, usage, export and delete', async () => {
  const image = `${infra.env.REGISTRY}/skiff/sleeper:1`;
  const created = skiff(['create', '-g', 'cli', '-n', 'web', '--image', image, '--cpu', '0.5', '--memory', '0.5',
    '-e', 'MODE=cli', '--secure-environment-variables', 'KEY=hidden']);
  assert.equal(created.code, 0, created.err + created.out);
  assert.match(created.out, /web\s+cli\s+Succeeded\s+Running/);
  assert.match(created.err, /Placed/);                 // progress while it starts
  assert.match(created.err, /web Started/);

  const shown = skiff(['show', '-g', 'cli', '-n', 'web', '-o', 'json']);
  assert.equal(shown.code, 0, shown.err);
  const doc = JSON.parse(shown.out);
  assert.equal(doc.properties.instanceView.state, 'Running');
  assert.equal(doc.properties.containers[0].properties.environmentVariables[1].secureValue, undefined);

  const listed = skiff(['list']);
  assert.equal(listed.code, 0, listed.err);
  assert.match(listed.out, /^NAME\s+RESOURCE GROUP\s+STATUS/);
  assert.match(listed.out, /web\s+cli\s+Succeeded/);

  // A job that prints and ends: its log.
  const job = skiff(['create', '-g', 'cli', '-n', 'job', '--image', `${infra.env.REGISTRY}/skiff/hello:1`,
    '--restart-policy', 'Never', '--cpu', '0.25', '--memory', '0.3']);
  assert.equal(job.code, 0, job.err);
  const logs = await until('the job wrote its log', () => {
    const r = skiff(['logs', '-g', 'cli', '-n', 'job']);
    return r.out.includes('hello from skiff') && r;
  });
  assert.equal(logs.code, 0);
  assert.equal(skiff(['logs', '-g', 'cli', '-n', 'job', '--container-name', 'nope']).code, 1);

  // exec: a command's output and exit code; stdin piped to a shell (no terminal: pipes).
  const echoed = skiff(['exec', '-g', 'cli', '-n', 'web', '--exec-command', '/bin/echo exec-ok']);
  assert.equal(echoed.code, 0, echoed.err);
  assert.equal(echoed.out, 'exec-ok\n');
  const shell = spawnSync(join(kit.build, 'services/cli/skiff'), ['exec', '-g', 'cli', '-n', 'web'],
    { env: { PATH: process.env.PATH, ...env }, input: 'echo piped-$MODE\nexit 4\n' });
  assert.equal(shell.status, 4, shell.stderr.toString());
  assert.equal(shell.stdout.toString(), 'piped-cli\n');
  // attach / logs --follow: the ended job's output, then it returns.
  const attached = skiff(['logs', '-g', 'cli', '-n', 'job', '--follow']);
  assert.equal(attached.code, 0, attached.err);
  assert.match(attached.out, /hello from skiff/);

  for (const verb of ['stop', 'start', 'restart']) {
    const r = skiff([verb, '-g', 'cli', '-n', 'web']);
    assert.equal(r.code, 0, `${verb}: ${r.err}`);
    assert.equal(r.out, `${verb}: web\n`);
  }
  await until('running again', () => kit.running('cli-a').length === 1, 30000);

  const usage = skiff(['usage']);
  assert.equal(usage.code, 0, usage.err);
  assert.match(usage.out, /Container Groups: 2 of 100/);
  assert.match(usage.out, /Cost \(last 30 days\): [0-9.e-]+ USD/);

  const exported = skiff(['export', '-g', 'cli', '-n', 'web']);
  assert.equal(exported.code, 0);
  const exportDir = mkdtempSync(join(tmpdir(), 'skiff-cli-'));
  const file = join(exportDir, 'group.json');
  writeFileSync(file, exported.out);
  const again = skiff(['create', '-g', 'cli', '-n', 'copy', '-f', file, '--no-wait']);
  rmSync(exportDir, { recursive: true, force: true });
  assert.equal(again.code, 0, again.err);
  assert.equal(again.out, 'accepted: copy\n');

  assert.equal(skiff(['delete', '-g', 'cli', '-n', 'copy']).out, 'deleted: copy\n');
  assert.equal(skiff(['delete', '-g', 'cli', '-n', 'job']).out, 'deleted: job\n');
  assert.equal(skiff(['delete', '-g', 'cli', '-n', 'web']).out, 'deleted: web\n');
  assert.equal(skiff(['delete', '-g', 'cli', '-n', 'web']).out, 'nothing to delete: web\n');
  await until('nothing runs', () => kit.running('cli-a').length === 0, 30000);
});

test('errors print a clear message and exit non-zero', async () => {
  const badFlag = skiff(['create', '-g', 'cli', '-n', 'x', '--image', 'i', '--cpu', 'lots']);
  assert.notEqual(badFlag.code, 0);
  assert.match(badFlag.err, /--cpu/);
  const noImage = skiff(['create', '-g', 'cli', '-n', 'x']);
  assert.equal(noImage.code, 1);
  assert.match(noImage.err, /--image is required/);
  const missing = skiff(['show', '-g', 'cli', '-n', 'nope']);
  assert.equal(missing.code, 1);
  assert.match(missing.err, /^skiff: ResourceNotFound: /);
  const invalid = skiff(['create', '-g', 'cli', '-n', 'Bad_Name', '--image', 'i', '--no-wait']);
  assert.equal(invalid.code, 1);
  assert.match(invalid.err, /InvalidContainerGroupName|is invalid/);
  const down = skiff(['list'], { SKIFF_URL: 'https://127.0.0.1:1' });
  assert.equal(down.code, 3);
  assert.match(down.err, /cannot reach the Skiff API at https:\/\/127\.0\.0\.1:1/);
  const noCredentials = spawnSync(join(kit.build, 'services/cli/skiff'), ['list'], { env: { PATH: process.env.PATH }, cwd: '/' });
  assert.equal(noCredentials.status, 2);
  assert.match(noCredentials.stderr.toString(), /no credentials: set --url\/SKIFF_URL/);
});

test('create -f takes az YAML (name from the file), and exec in a terminal follows window resizes', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'skiff-cli-yaml-'));
  const file = join(dir, 'group.yaml');
  writeFileSync(file, `apiVersion: 2019-12-01
location: local
name: yaml-web
properties:
  containers:
  - name: app
    properties:
      image: ${infra.env.REGISTRY}/skiff/sleeper:1
      resources:
        requests:
          cpu: 0.5
          memoryInGb: 0.5
      environmentVariables:
      - name: FROM
        value: "yaml"
  osType: Linux
  restartPolicy: Always
tags: {via: yaml}
type: Microsoft.ContainerInstance/containerGroups
`);
  const created = skiff(['create', '-g', 'cli', '-f', file]);
  assert.equal(created.code, 0, created.err);
  assert.match(created.out, /yaml-web\s+cli\s+Succeeded\s+Running/);
  const doc = JSON.parse(skiff(['show', '-g', 'cli', '-n', 'yaml-web', '-o', 'json']).out);
  assert.equal(doc.properties.containers[0].properties.resources.requests.memoryInGB, 0.5);
  assert.deepEqual(doc.tags, { via: 'yaml' });

  const broken = join(dir, 'broken.yaml');
  writeFileSync(broken, 'properties: [unclosed\n');
  const refused = skiff(['create', '-g', 'cli', '-f', broken]);
  assert.equal(refused.code, 1);
  assert.match(refused.err, /neither JSON nor YAML/);
  const unnamed = join(dir, 'unnamed.yaml');
  writeFileSync(unnamed, 'location: local\n');
  assert.match(skiff(['create', '-g', 'cli', '-f', unnamed]).err, /-n\/--name is required unless the file names the group/);

  // A pty of 24x80 runs `skiff exec` (a remote terminal of that size); the window then grows to
  // 40x100 with SIGWINCH, and `stty size` inside the container sees the new size.
  const driver = `
import os, pty, sys, time, fcntl, termios, struct, signal, select
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
def size(rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack('HHHH', rows, cols, 0, 0))
def read_until(text, seconds):
    out, end = b'', time.time() + seconds
    while time.time() < end and text.encode() not in out:
        if select.select([fd], [], [], 0.2)[0]:
            try: out += os.read(fd, 4096)
            except OSError: break
    return out.decode(errors='replace')
size(24, 80)
time.sleep(1.5)
os.write(fd, b'stty size\\n')
first = read_until('24 80', 10)
size(40, 100)
os.kill(pid, signal.SIGWINCH)
time.sleep(0.5)
os.write(fd, b'stty size\\n')
second = read_until('40 100', 10)
os.write(fd, b'exit 7\\n')
rest, end, status = '', time.time() + 20, None
while status is None and time.time() < end:
    rest += read_until('never', 0.2)
    done, raw = os.waitpid(pid, os.WNOHANG)
    if done: status = os.waitstatus_to_exitcode(raw)
if status is None:  # say what the terminal showed instead of hanging until the test's timeout
    os.kill(pid, signal.SIGKILL)
    sys.stderr.write('exec did not end; terminal output: %r %r %r\\n' % (first, second, rest))
print('FIRST' if '24 80' in first else 'NOFIRST', 'SECOND' if '40 100' in second else 'NOSECOND', status)
`;
  const ran = spawnSync('python3', ['-c', driver, join(kit.build, 'services/cli/skiff'), 'exec', '-g', 'cli', '-n', 'yaml-web',
    '--exec-command', '/bin/sh'], { env: { PATH: process.env.PATH, ...env }, timeout: 60000 });
  assert.equal(ran.stdout.toString().trim(), 'FIRST SECOND 7', ran.stderr.toString());
  assert.equal(skiff(['delete', '-g', 'cli', '-n', 'yaml-web']).out, 'deleted: yaml-web\n');
  rmSync(dir, { recursive: true, force: true });
});
