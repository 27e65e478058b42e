import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { parse } from 'yaml';
import { ROOT, startMaster, tempDir } from '../helpers/cluster.js';

const DEPLOY = path.join(ROOT, 'deploy');
const has = (cmd: string): boolean => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

describe('deploy scripts and units', () => {
  test.skipIf(!has('shellcheck'))('shellcheck passes on every shell script (needs shellcheck; .ci/run installs it)', () => {
    const scripts = ['install.sh', 'aws/fleet.sh'].map((s) => path.join(DEPLOY, s));
    const r = spawnSync('shellcheck', ['--shell=sh', ...scripts], { encoding: 'utf8' });
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  test.skipIf(!has('systemd-analyze'))('the systemd units pass systemd-analyze verify, and a broken one does not (needs systemd-analyze)', () => {
    const root = tempDir();
    mkdirSync(path.join(root, 'bin'));
    mkdirSync(path.join(root, 'etc'));
    writeFileSync(path.join(root, 'bin/worker'), '#!/bin/sh\n', { mode: 0o755 });
    writeFileSync(path.join(root, 'etc/worker.env'), '');
    const verify = (unit: string, text: string): { status: number | null; out: string } => {
      const file = path.join(root, unit);
      writeFileSync(file, text.replaceAll('/opt/drover', root));
      const r = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8' });
      return { status: r.status, out: r.stdout + r.stderr };
    };
    const worker = readFileSync(path.join(DEPLOY, 'systemd/drover-worker.service'), 'utf8');
    const master = readFileSync(path.join(DEPLOY, 'systemd/drover-master.service'), 'utf8');
    expect(verify('drover-worker.service', worker)).toEqual({ status: 0, out: '' });
    expect(verify('drover-master.service', master)).toEqual({ status: 0, out: '' });
    expect(verify('broken.service', worker.replace('bin/worker', 'bin/missing')).status).not.toBe(0);
    for (const text of [worker, master]) {
      expect(text).toMatch(/^NoNewPrivileges=yes$/m);
      expect(text).toMatch(/^Restart=always$/m);
      expect(text).toMatch(/^StandardOutput=journal$/m);
    }
    // Apps must survive an agent restart or upgrade: systemd stops only the agent.
    expect(worker).toMatch(/^KillMode=process$/m);
    expect(worker).toMatch(/^StateDirectory=drover$/m);
  });

  test('the CloudFormation template parses and has the fleet it promises', () => {
    const tags = [
      'Ref',
      'Sub',
      'GetAtt',
      'Equals',
      'Not',
      'If',
      'Base64',
      'Select',
      'Join',
      'Split',
      'GetAZs',
      'FindInMap',
      'ImportValue',
      'Condition',
      'And',
      'Or',
    ];
    const customTags = tags.flatMap((t) =>
      (['scalar', 'seq', 'map'] as const).map((nodeClass) => ({
        tag: `!${t}`,
        collection: nodeClass === 'scalar' ? undefined : nodeClass,
        resolve: (v: unknown) => ({ [t === 'Ref' || t === 'Condition' ? t : `Fn::${t}`]: v }),
      })),
    );
    const doc = parse(readFileSync(path.join(DEPLOY, 'aws/workers.yaml'), 'utf8'), { customTags: customTags as never }) as {
      Parameters: Record<string, { Type: string; Default?: unknown; AllowedPattern?: string }>;
      Resources: Record<string, { Type: string; Properties: Record<string, unknown>; CreationPolicy?: unknown; UpdatePolicy?: unknown }>;
    };
    expect(Object.keys(doc.Parameters)).toEqual(
      expect.arrayContaining([
        'MasterAddress',
        'MasterFingerprint',
        'MasterPublicKeyPin',
        'WorkerCount',
        'InstanceType',
        'AmiId',
        'VpcId',
        'SubnetIds',
        'TokenParameterName',
        'RootVolumeSize',
        'RootVolumeType',
      ]),
    );
    expect(doc.Parameters.KeyName).toBeUndefined(); // no SSH: Session Manager instead
    expect(new RegExp(doc.Parameters.MasterFingerprint!.AllowedPattern!).test(`sha256:${'ab'.repeat(32)}`)).toBe(true);
    expect(new RegExp(doc.Parameters.MasterPublicKeyPin!.AllowedPattern!).test(`sha256//${Buffer.alloc(32, 7).toString('base64')}`)).toBe(true);
    expect(doc.Parameters.AmiId!.Type).toBe('AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>');
    expect(doc.Parameters.SubnetIds!.Type).toBe('List<AWS::EC2::Subnet::Id>');
    const types = Object.fromEntries(Object.entries(doc.Resources).map(([k, v]) => [k, v.Type]));
    expect(Object.values(types)).toEqual(
      expect.arrayContaining([
        'AWS::AutoScaling::AutoScalingGroup',
        'AWS::EC2::LaunchTemplate',
        'AWS::EC2::SecurityGroup',
        'AWS::IAM::Role',
        'AWS::IAM::InstanceProfile',
      ]),
    );
    const asg = doc.Resources.WorkerGroup!.Properties;
    expect(asg.VPCZoneIdentifier).toEqual({ Ref: 'SubnetIds' });
    expect(asg.DesiredCapacity).toEqual({ Ref: 'WorkerCount' });
    const sg = doc.Resources.WorkerSecurityGroup!.Properties as {
      SecurityGroupIngress?: unknown;
      SecurityGroupEgress: { FromPort: unknown; CidrIp: unknown }[];
    };
    expect(sg.SecurityGroupIngress).toBeUndefined();
    // cfn-lint E3031: a security group's description allows only a-z A-Z 0-9 space and ._-:/()#,@[]+=&;{}!$*
    expect((sg as { GroupDescription?: string }).GroupDescription).toMatch(/^[a-zA-Z0-9. _\-:/()#,@[\]+=&;{}!$*]*$/);
    expect(sg.SecurityGroupEgress).toEqual([expect.objectContaining({ FromPort: { Ref: 'MasterPort' }, CidrIp: { Ref: 'MasterCidr' } })]);
    const userData = JSON.stringify(doc.Resources.WorkerLaunchTemplate!.Properties);
    expect(userData).toContain('aws ssm get-parameter');
    expect(userData).toContain('--with-decryption');
    // Over https with the pin, the token in the environment (never an argument), and a loud failure.
    expect(userData).toContain("curl -fsSL ${CurlPin} --retry 10 --retry-connrefused 'https://${MasterAddress}/install.sh' | sh -s --${FingerprintArg}");
    expect(userData).toContain('export DROVER_TOKEN');
    expect(userData).not.toContain('--token');
    expect(userData).toContain('cfn-signal --exit-code');
    expect(userData).toContain("trap 'signal 1");
    expect(userData).toMatch(/VolumeSize.*RootVolumeSize/);
    const policy = JSON.stringify(doc.Resources.WorkerRole!.Properties);
    expect(policy).toContain('ssm:GetParameter');
    expect(policy).toContain('AmazonSSMManagedInstanceCore');
    expect(doc.Resources.WorkerGroup!.CreationPolicy).toMatchObject({ ResourceSignal: { Count: { Ref: 'WorkerCount' } } });
    expect(doc.Resources.WorkerGroup!.UpdatePolicy).toMatchObject({ AutoScalingRollingUpdate: { WaitOnResourceSignals: true } });
  });

  test.skipIf(!has('cfn-lint'))('the CloudFormation template passes cfn-lint (needs cfn-lint)', () => {
    const r = spawnSync('cfn-lint', [path.join(DEPLOY, 'aws/workers.yaml')], { encoding: 'utf8' });
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  test('fleet.sh drives the aws CLI: up N, status, down, and clear errors', () => {
    const bin = tempDir();
    const calls = path.join(bin, 'calls.log');
    // A stand-in for the aws CLI (AWS cannot be reached from here): records every call.
    writeFileSync(
      path.join(bin, 'aws'),
      `#!/bin/sh\necho "$*" >> ${calls}\ncase "$*" in *describe-stacks*StackStatus*) [ -f ${bin}/stack ] && echo CREATE_COMPLETE || exit 255 ;; *"cloudformation deploy"*) touch ${bin}/stack ;; *delete-stack*) rm -f ${bin}/stack ;; *OutputKey*) echo drover-asg ;; *describe-auto-scaling*) printf 'i-1\\tus-east-1a\\tInService\\tHealthy\\n' ;; esac\n`,
    );
    chmodSync(path.join(bin, 'aws'), 0o755);
    const fleet = (args: string[], env: Record<string, string> = {}) =>
      spawnSync('sh', [path.join(DEPLOY, 'aws/fleet.sh'), ...args], { encoding: 'utf8', env: { PATH: `${bin}:/usr/bin:/bin`, ...env } });
    const env = { DROVER_MASTER: '10.0.1.5:7070', DROVER_VPC: 'vpc-1', DROVER_SUBNETS: 'subnet-a,subnet-b', DROVER_TOKEN: 'tok-0123456789abcdef' };

    expect(fleet(['up', '3'], { DROVER_VPC: 'x' }).stderr).toMatch(/^fleet: error: set DROVER_MASTER/);
    expect(fleet(['up', 'three'], env).stderr).toMatch(/usage: .* up N/);
    expect(fleet(['sideways']).stderr).toMatch(/usage: .* up N \| down \| status/);
    expect(fleet(['status']).stdout).toContain('no stack drover-workers');

    const up = fleet(['up', '3'], env);
    expect(up.status).toBe(0);
    const log = readFileSync(calls, 'utf8');
    expect(log).toContain('ssm put-parameter --name /drover/join-token --type SecureString --value tok-0123456789abcdef --overwrite');
    expect(log).toMatch(/cloudformation deploy --stack-name drover-workers --template-file \S+workers\.yaml --capabilities CAPABILITY_IAM/);
    expect(log).toContain('MasterAddress=10.0.1.5:7070 MasterPort=7070');
    expect(log).toContain('WorkerCount=3');
    expect(log).toContain('SubnetIds=subnet-a,subnet-b');
    const status = fleet(['status']);
    expect(status.stdout).toContain('stack drover-workers: CREATE_COMPLETE');
    expect(status.stdout).toContain('i-1\tus-east-1a\tInService');
    const down = fleet(['down']);
    expect(down.status).toBe(0);
    expect(readFileSync(calls, 'utf8')).toContain('cloudformation wait stack-delete-complete --stack-name drover-workers');
    expect(fleet(['down']).stdout).toContain('nothing to delete');
  });
});

describe('install.sh against a real master', () => {
  test('refuses bad input with one line, and a corrupt download installs nothing', async () => {
    const deployCopy = tempDir();
    mkdirSync(path.join(deployCopy, 'systemd'));
    copyFileSync(path.join(DEPLOY, 'install.sh'), path.join(deployCopy, 'install.sh'));
    copyFileSync(path.join(DEPLOY, 'systemd/drover-worker.service'), path.join(deployCopy, 'systemd/drover-worker.service'));
    const bundleDir = tempDir();
    copyFileSync(path.join(ROOT, 'packages/worker/dist/worker.mjs'), path.join(bundleDir, 'worker.mjs'));
    writeFileSync(path.join(bundleDir, 'worker.mjs.sha256'), `${'0'.repeat(64)}  worker.mjs\n`);
    process.env.DROVER_WORKER_BUNDLE = path.join(bundleDir, 'worker.mjs');
    const master = await startMaster().finally(() => delete process.env.DROVER_WORKER_BUNDLE);
    const script = execFileSync('curl', ['-fsS', `http://${master.address}/install.sh`], { encoding: 'utf8' });
    expect(script).toContain(`DEFAULT_MASTER="${master.address}"`);
    const prefix = path.join(tempDir(), 'drover');
    const run = (...args: string[]) =>
      spawnSync('sh', ['-s', '--', ...args], { input: script, encoding: 'utf8', env: { PATH: process.env.PATH!, HOME: '/nonexistent' } });

    const cases: [string[], RegExp][] = [
      [['--prefix', prefix, '--no-systemd'], /^drover: error: no join token: set DROVER_TOKEN or pass --token-file FILE/],
      [['--token-file', '/no/such/token', '--prefix', prefix], /^drover: error: cannot read --token-file \/no\/such\/token/],
      [['--token', 't0ken-0123456789', '--prefix', 'relative'], /^drover: error: --prefix must be an absolute path/],
      [['--token', 't0ken-0123456789', '--master', 'nohost', '--prefix', prefix], /^drover: error: --master must be HOST:PORT/],
      [['--token', 't0ken-0123456789', '--name', '../x', '--prefix', prefix], /^drover: error: --name must be/],
      [['--frobnicate'], /drover: error: unknown option: --frobnicate/],
      [['--prefix', prefix, '--uninstall'], /^drover: error: nothing to uninstall/],
      [
        ['--token', 't0ken-0123456789', '--prefix', prefix, '--no-systemd', '--node', '/bin/true'],
        /^drover: error: --node \/bin\/true is not Node.js 20 or later/,
      ],
    ];
    for (const [args, expected] of cases) {
      const r = run(...args);
      expect(r.status, args.join(' ')).not.toBe(0);
      expect(r.stderr.trim().split('\n').at(-1), args.join(' ')).toMatch(expected);
      expect(existsSync(prefix), args.join(' ')).toBe(false);
    }
    const corrupt = run('--token', 't0ken-0123456789', '--prefix', prefix, '--no-systemd');
    expect(corrupt.status).not.toBe(0);
    expect(corrupt.stderr).toMatch(/the downloaded worker is corrupt: sha256 [0-9a-f]{64}, expected 0{64}; nothing was installed/);
    expect(existsSync(prefix) ? readdirSync(prefix) : []).toEqual([]);
  });
});
