// Underlay interface choice with IPv6 (needs root, network namespaces and `npm run build`): the
// compiled chooseInterface runs inside a fresh namespace with dummy interfaces, as the agent would.
// An IPv6-only interface, --iface <IPv6 address>, --iface-regex on IPv6 addresses, the IPv6
// default route, and deprecated or link-local addresses never taken as the underlay address.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Netns, runPrefix } from '../testbed/netns.js';
import { repoRoot } from '../testbed/tcp.js';

const prefix = runPrefix();
let ns: Netns;

async function choose(ifaces: string[], regexes: string[] = []): Promise<unknown> {
  const module = join(repoRoot(), 'dist', 'src', 'net', 'iface.js');
  const script = `import(${JSON.stringify(module)}).then((m) => {
    try { console.log(JSON.stringify(m.chooseInterface(${JSON.stringify(ifaces)}, ${JSON.stringify(regexes)}))); }
    catch (e) { console.log(JSON.stringify({ error: e.message })); }
  });`;
  return JSON.parse((await ns.exec([process.execPath, '-e', script])).stdout);
}

beforeAll(async () => {
  ns = await Netns.create(`${prefix}-if6`);
  // veth pairs inside the one namespace (no dummy module here); the peers keep only link-local addresses.
  for (const name of ['v6only', 'both', 'stale']) {
    await ns.ip(['link', 'add', name, 'mtu', '1400', 'type', 'veth', 'peer', 'name', `${name}-p`]);
    await ns.ip(['link', 'set', `${name}-p`, 'up']);
    await ns.ip(['link', 'set', name, 'up']);
  }
  await ns.ip(['addr', 'add', 'fd00::5/64', 'dev', 'v6only', 'nodad']);
  await ns.ip(['addr', 'add', '10.1.0.1/24', 'dev', 'both']);
  await ns.ip(['addr', 'add', 'fd00:1::6/64', 'dev', 'both', 'nodad']);
  // Only a deprecated global address (and the automatic link-local one): no usable IPv6 address.
  await ns.ip(['addr', 'add', 'fd00:2::7/64', 'dev', 'stale', 'nodad', 'preferred_lft', '0']);
  await ns.ip(['-6', 'route', 'add', 'default', 'via', 'fd00::1', 'dev', 'v6only']);
});
afterAll(async () => {
  await ns?.delete();
});

describe('chooseInterface with IPv6 (root, netns)', () => {
  it('an interface with only an IPv6 address is an IPv6-only underlay', async () => {
    expect(await choose(['v6only'])).toEqual({ name: 'v6only', address6: 'fd00::5', mtu: 1400 });
  });

  it('--iface <IPv6 address> picks its interface and that address; an IPv4 one keeps the IPv6 address too', async () => {
    expect(await choose(['FD00:1::6'])).toEqual({ name: 'both', address: '10.1.0.1', address6: 'fd00:1::6', mtu: 1400 });
    expect(await choose(['10.1.0.1'])).toEqual({ name: 'both', address: '10.1.0.1', address6: 'fd00:1::6', mtu: 1400 });
  });

  it('--iface-regex matches IPv6 addresses after IPv4 ones', async () => {
    expect(await choose([], ['^fd00::5$'])).toEqual({ name: 'v6only', address6: 'fd00::5', mtu: 1400 });
  });

  it('without --iface: the IPv6 default route\'s interface when there is no IPv4 default route', async () => {
    expect(await choose([])).toEqual({ name: 'v6only', address6: 'fd00::5', mtu: 1400 });
  });

  it('deprecated and link-local addresses are not underlay addresses', async () => {
    expect(await choose(['stale'])).toEqual({ error: 'interface stale has no IPv4 and no global IPv6 address' });
  });
});
