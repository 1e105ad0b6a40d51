// The addon's TUN and rtnetlink functions against the real kernel (needs root, /dev/net/tun and
// network namespaces). Addon calls act on the calling process's namespace, so every scenario runs
// the fixture test/native/fixtures/tun-driver.mjs under `ip netns exec` in a fresh namespace.
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parseIPv4 } from '../../src/net/cidr.js';
import { Netns, ping, runPrefix } from '../testbed/netns.js';
import { FixtureDriver } from '../support/driver.js';
import { within } from '../support/wait.js';
import { icmpEcho, ipv4 } from '../support/packets.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const FIXTURE = path.join(here, 'fixtures/tun-driver.mjs');
const prefix = runPrefix();

const ip32 = parseIPv4;

interface IpLink {
  ifname: string;
  mtu: number;
  txqlen: number;
  flags: string[];
}
interface IpAddr {
  addr_info: { family: string; local: string; prefixlen: number }[];
}
interface IpRoute {
  dst: string;
  dev: string;
}

async function links(ns: Netns): Promise<IpLink[]> {
  return JSON.parse(await ns.ip(['-j', 'link', 'show'])) as IpLink[];
}
async function routes(ns: Netns): Promise<IpRoute[]> {
  return JSON.parse(await ns.ip(['-j', 'route', 'show'])) as IpRoute[];
}

describe('native addon: TUN device + rtnetlink in a namespace (needs root)', () => {
  let ns: Netns;
  let drv: FixtureDriver;
  let fd: number;

  beforeAll(async () => {
    ns = await Netns.create(`${prefix}-tun`);
    drv = FixtureDriver.spawn(ns, FIXTURE);
  });

  afterAll(async () => {
    await ns?.delete();
  });

  test('tunOpen creates the device under the requested name', async () => {
    const tun = await drv.call<{ fd: number; name: string }>('open', { name: 'felt0' });
    expect(tun.name).toBe('felt0');
    expect(tun.fd).toBeGreaterThan(2);
    fd = tun.fd;
    expect((await links(ns)).map((l) => l.ifname)).toContain('felt0');
  });

  test('tunOpen returns the name the kernel chose for a %d pattern', async () => {
    const tun = await drv.call<{ fd: number; name: string }>('open', { name: 'fx%d' });
    expect(tun.name).toBe('fx0');
    await drv.call('close', { fd: tun.fd });
  });

  test('linkSetup sets MTU, txqueuelen, address/32 and up; routeAdd adds the network route', async () => {
    await drv.call('linkSetup', {
      name: 'felt0',
      options: { mtu: 1400, address: ip32('10.244.1.0'), prefixLen: 32, txQueueLen: 1234 },
    });
    await drv.call('routeAdd', { name: 'felt0', network: ip32('10.244.0.0'), prefixLen: 16 });
    // A second add of the same route is not an error (EEXIST).
    await drv.call('routeAdd', { name: 'felt0', network: ip32('10.244.0.0'), prefixLen: 16 });

    const link = (await links(ns)).find((l) => l.ifname === 'felt0')!;
    expect(link.mtu).toBe(1400);
    expect(link.txqlen).toBe(1234);
    expect(link.flags).toContain('UP');
    const addrs = JSON.parse(await ns.ip(['-j', 'addr', 'show', 'dev', 'felt0'])) as IpAddr[];
    const inet = addrs[0]!.addr_info.filter((a) => a.family === 'inet');
    expect(inet).toEqual([expect.objectContaining({ local: '10.244.1.0', prefixlen: 32 })]);
    expect(await routes(ns)).toContainEqual(expect.objectContaining({ dst: '10.244.0.0/16', dev: 'felt0' }));
  });

  test('a ping into the routed network reaches the reader as an ICMP echo request', async () => {
    await drv.call('startReader', { fd });
    const seen = drv.call<{ src: string; dst: string; icmpType: number }>('waitPacket', {
      match: { proto: 1, icmpType: 8, dst: '10.244.2.5' },
      timeoutMs: 20_000,
    });
    await ping(ns, '10.244.2.5', { count: 2, waitS: 1 }); // nobody answers; we only want the request
    const pkt = await seen;
    expect(pkt.src).toBe('10.244.1.0');
    const stats = await drv.call<{ batches: number; formatErrors: number }>('stats');
    expect(stats.batches).toBeGreaterThan(0);
    expect(stats.formatErrors).toBe(0);
  });

  test('each batch is a fresh Buffer the handler owns: later batches never overwrite it', async () => {
    await ping(ns, '10.244.3.9', { count: 3, intervalS: 0.2, waitS: 1 });
    const stats = await drv.call<{ batches: number; reusedBatches: number }>('stats');
    expect(stats.batches).toBeGreaterThan(1);
    expect(stats.reusedBatches).toBe(0);
  });

  test('an echo request written with tunWrite to our own address comes back as the kernel echo reply', async () => {
    const request = ipv4('10.244.2.5', '10.244.1.0', 1, icmpEcho(0x4242, 7, Buffer.from('felt-native')));
    const reply = drv.call<{ src: string; dst: string; icmpId: number; icmpSeq: number }>('waitPacket', {
      match: { proto: 1, icmpType: 0, dst: '10.244.2.5' },
      timeoutMs: 20_000,
    });
    expect(await drv.call('write', { fd, hex: request.toString('hex') })).toBe(true);
    const r = await reply;
    expect(r.src).toBe('10.244.1.0');
    expect(r.icmpId).toBe(0x4242);
    expect(r.icmpSeq).toBe(7);
  });

  test('tunWrite returns false (does not throw) when the kernel refuses the packet', async () => {
    // Version nibble 0: the TUN driver rejects it with EINVAL.
    expect(await drv.call('write', { fd, hex: Buffer.alloc(20).toString('hex') })).toBe(false);
    // Not an fd at all.
    expect(await drv.call('write', { fd: 100_000, hex: Buffer.alloc(20).toString('hex') })).toBe(false);
  });

  test('routeDel removes the route; deleting it again is not an error', async () => {
    await drv.call('routeDel', { name: 'felt0', network: ip32('10.244.0.0'), prefixLen: 16 });
    expect((await routes(ns)).some((r) => r.dst === '10.244.0.0/16')).toBe(false);
    await drv.call('routeDel', { name: 'felt0', network: ip32('10.244.0.0'), prefixLen: 16 });
    await drv.call('routeAdd', { name: 'felt0', network: ip32('10.244.0.0'), prefixLen: 16 });
  });

  test('routeAdd / linkSetup on a missing device throw a clear error', async () => {
    await expect(drv.call('routeAdd', { name: 'nosuch0', network: ip32('10.9.0.0'), prefixLen: 16 })).rejects.toThrow(
      'routeAdd nosuch0: No such device',
    );
    await expect(
      drv.call('linkSetup', { name: 'nosuch0', options: { mtu: 1400, address: 1, prefixLen: 32 } }),
    ).rejects.toThrow('linkSetup nosuch0: No such device');
  });

  test('tunOpen with a name that is too long throws a clear error', async () => {
    await expect(drv.call('open', { name: 'a-much-too-long-name' })).rejects.toThrow(
      /^TUNSETIFF a-much-too-long-name: device name too long/,
    );
  });

  test('bad argument types are TypeErrors, not crashes', async () => {
    const route = (network: number, prefixLen: number) => drv.call('routeAdd', { name: 'felt0', network, prefixLen });
    await expect(route(-1, 16)).rejects.toThrow(/network must be/);
    await expect(route(1, 33)).rejects.toThrow(/prefixLen must be/);
    const setup = drv.call('linkSetup', { name: 'felt0', options: { mtu: 10, address: 1, prefixLen: 32 } });
    await expect(setup).rejects.toThrow(/mtu must be/);
  });

  test('stop() is idempotent; tunClose removes the device and its route; the process can exit', async () => {
    await drv.call('stopReader');
    await drv.call('stopReader');
    await drv.call('close', { fd });
    expect((await links(ns)).map((l) => l.ifname)).not.toContain('felt0');
    expect((await routes(ns)).some((r) => r.dst === '10.244.0.0/16')).toBe(false);
    // Nothing (in particular no threadsafe function) keeps the fixture alive once stdin closes.
    drv.endInput();
    expect(await within(drv.exited, 15_000, 'fixture exit')).toBe(0);
  });
});
