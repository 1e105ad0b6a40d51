import { describe, expect, it } from 'vitest';
import { parseNetworkConfig } from '../../src/lease/config.js';
import { resolvePublicIPs } from '../../src/public-ips.js';

const v4only = parseNetworkConfig({ Network: '10.244.0.0/16' });
const dual = parseNetworkConfig({ Network: '10.244.0.0/16', EnableIPv6: true, IPv6Network: 'fc00::/48' });
const none = { stored: async () => undefined, stored6: async () => undefined };

describe('resolvePublicIPs', () => {
  it('IPv4-only cluster: the interface IPv4 address; no PublicIPv6 even when the interface has one', async () => {
    expect(await resolvePublicIPs(none, { name: 'eth0', address: '192.168.77.2', address6: 'fd00::2', mtu: 1500 }, v4only)).toEqual({ publicIP: '192.168.77.2' });
  });

  it('dual-stack: flag, then stored, then the interface address, for each family', async () => {
    const iface = { name: 'eth0', address: '192.168.77.2', address6: 'fd00::2', mtu: 1500 };
    expect(await resolvePublicIPs(none, iface, dual)).toEqual({ publicIP: '192.168.77.2', publicIPv6: 'fd00::2' });
    expect(await resolvePublicIPs({ stored: async () => '10.1.1.1', stored6: async () => 'FD00:0::9' }, iface, dual)).toEqual({ publicIP: '10.1.1.1', publicIPv6: 'fd00::9' });
    expect(await resolvePublicIPs({ ...none, flag: '10.2.2.2', flag6: 'fd00::7' }, iface, dual)).toEqual({ publicIP: '10.2.2.2', publicIPv6: 'fd00::7' });
  });

  it('an IPv6-only interface gives PublicIP 0.0.0.0 (what flannel writes) and the IPv6 address', async () => {
    expect(await resolvePublicIPs(none, { name: 'eth0', address6: 'fd00::2', mtu: 1500 }, dual)).toEqual({ publicIP: '0.0.0.0', publicIPv6: 'fd00::2' });
  });

  it('clear errors: no usable address, bad flags', async () => {
    await expect(resolvePublicIPs(none, { name: 'eth0', address6: 'fd00::2', mtu: 1500 }, v4only)).rejects.toThrow(/eth0 has no IPv4 address \(an IPv6 underlay needs EnableIPv6/);
    await expect(resolvePublicIPs(none, { name: 'eth0', mtu: 1500 }, dual)).rejects.toThrow(/neither an IPv4 nor a global IPv6 address/);
    await expect(resolvePublicIPs({ ...none, flag6: 'x' }, { name: 'eth0', address: '192.168.77.2', mtu: 1500 }, dual)).rejects.toThrow('invalid public IPv6 address "x" (--public-ipv6)');
    await expect(resolvePublicIPs({ ...none, flag: 'fd00::1' }, { name: 'eth0', address: '192.168.77.2', mtu: 1500 }, dual)).rejects.toThrow(/invalid public IP "fd00::1"/);
  });
});
