import { mkdtempSync, readFileSync, rmSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { formatSubnetEnv, readPreviousSubnet, writeSubnetEnv } from '../../src/subnetenv.js';
import { formatSubnet, parseSubnet } from '../../src/net/cidr.js';

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));
const tmp = () => { const d = mkdtempSync(path.join(tmpdir(), 'felt-senv-')); dirs.push(d); return d; };

describe('subnet.env', () => {
  const env = { network: parseSubnet('10.244.0.0/16'), subnet: parseSubnet('10.244.7.0/24'), mtu: 1472, ipMasq: false };

  it('has the four keys the flannel CNI plugin needs, FLANNEL_SUBNET = .1/len', () => {
    expect(formatSubnetEnv(env)).toBe('FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.7.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n');
  });

  it('is written atomically into a new directory and read back as the previous subnet', async () => {
    const file = path.join(tmp(), 'run', 'flannel', 'subnet.env');
    await writeSubnetEnv(file, env);
    expect(readFileSync(file, 'utf8')).toContain('FLANNEL_SUBNET=10.244.7.1/24');
    expect(readdirSync(path.dirname(file))).toEqual(['subnet.env']);
    const previous = await readPreviousSubnet(file);
    expect(previous && formatSubnet(previous)).toBe('10.244.7.0/24');
  });

  it('ignores a missing or garbled file', async () => {
    const dir = tmp();
    expect(await readPreviousSubnet(path.join(dir, 'absent'))).toBeUndefined();
    writeFileSync(path.join(dir, 'bad'), 'FLANNEL_SUBNET=banana\n');
    expect(await readPreviousSubnet(path.join(dir, 'bad'))).toBeUndefined();
  });
});
