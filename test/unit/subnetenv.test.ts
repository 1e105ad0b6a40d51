import { mkdtempSync, readFileSync, rmSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { formatSubnetEnv, readPreviousSubnet, readPreviousSubnets, writeSubnetEnv } from '../../src/subnetenv.js';
import { formatSubnet6, parseSubnet6 } from '../../src/net/ip6.js';
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

describe('subnet.env with IPv6 (flannel WriteSubnetFile)', () => {
  const env = {
    network: parseSubnet('10.244.0.0/16'),
    subnet: parseSubnet('10.244.7.0/24'),
    network6: parseSubnet6('fc00::/48'),
    subnet6: parseSubnet6('fc00:0:0:7::/64'),
    mtu: 1452,
    ipMasq: true,
  };

  it('writes the IPv6 lines after the IPv4 ones, the subnet as its first host', () => {
    expect(formatSubnetEnv(env)).toBe(
      'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.7.1/24\n' +
        'FLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00:0:0:7::1/64\n' +
        'FLANNEL_MTU=1452\nFLANNEL_IPMASQ=true\n',
    );
  });

  it('IPv4-only output is unchanged byte for byte', () => {
    const { network6: _n, subnet6: _s, ...v4 } = env;
    expect(formatSubnetEnv(v4)).toBe('FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.7.1/24\nFLANNEL_MTU=1452\nFLANNEL_IPMASQ=true\n');
  });

  it('reads both previous subnets back (host bits masked); a garbled IPv6 line only loses that half', async () => {
    const file = path.join(tmp(), 'subnet.env');
    await writeSubnetEnv(file, env);
    const previous = await readPreviousSubnets(file);
    expect(previous.subnet && formatSubnet(previous.subnet)).toBe('10.244.7.0/24');
    expect(previous.subnet6 && formatSubnet6(previous.subnet6)).toBe('fc00:0:0:7::/64');
    writeFileSync(file, 'FLANNEL_SUBNET=10.244.7.1/24\nFLANNEL_IPV6_SUBNET=fc00::zz/64\n');
    expect(await readPreviousSubnets(file)).toEqual({ subnet: parseSubnet('10.244.7.0/24') });
  });
});
