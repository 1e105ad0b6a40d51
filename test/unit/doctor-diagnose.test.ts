// The per-peer verdict from made-up evidence: each cause felt doctor knows, and the order they win in.
import { describe, expect, it } from 'vitest';
import { diagnosePeer, emptyEvidence, type PeerEvidence } from '../../src/doctor/peers.js';
import { formatReport } from '../../src/doctor/report.js';
import { exitCodeOf, type CheckResult } from '../../src/doctor/types.js';
import { parseSubnet } from '../../src/net/cidr.js';
import { parseSubnet6 } from '../../src/net/ip6.js';

const lease = (expiresInSeconds: number | null = 86_000) => ({ subnet: parseSubnet('10.244.3.0/24'), publicIP: '192.168.77.13', expiresInSeconds });

function ev(p: { small?: number; full?: number | null; underlay?: number; icmp?: PeerEvidence['icmp']; nat?: string[] }): PeerEvidence {
  const e = emptyEvidence(1472);
  e.small = { sent: 3, answered: p.small ?? 0, rtts: Array(p.small ?? 0).fill(0.4) };
  e.full = p.full === null ? { sent: 0, answered: 0, size: 1472 } : { sent: 2, answered: p.full ?? 0, size: 1472 };
  e.underlay = { sent: 3, answered: p.underlay ?? 0, rtts: Array(p.underlay ?? 0).fill(0.1) };
  e.icmp = p.icmp ?? [];
  e.natFrom = new Set(p.nat ?? []);
  return e;
}

const diagnose = (e: PeerEvidence, l = lease(), shadowedBy?: string) => diagnosePeer({ lease: l, ev: e, shadowedBy }, 8285, '10.244.1.0/24');

describe('diagnosePeer', () => {
  it('healthy: every probe answered', () => {
    expect(diagnose(ev({ small: 3, full: 2, underlay: 3 }))).toBeUndefined();
  });
  it('MTU: small probes pass, full-size ones are lost', () => {
    expect(diagnose(ev({ small: 3, full: 0, underlay: 3 }))!.summary).toMatch(/path MTU too small/);
  });
  it('lossy but alive: a warning', () => {
    expect(diagnose(ev({ small: 2, full: 2, underlay: 3 }))!.verdict).toBe('warn');
  });
  it('port-unreachable from the peer: its agent is not running', () => {
    const r = diagnose(ev({ underlay: 3, icmp: [{ kind: 'port-unreachable', from: '192.168.77.13', about: 'tunnel' }] }))!;
    expect(r.summary).toMatch(/agent not running there/);
    expect(r.peer).toEqual({ subnet: '10.244.3.0/24', publicIP: '192.168.77.13' });
  });
  it('admin-prohibited: a firewall rejects the port', () => {
    expect(diagnose(ev({ underlay: 3, icmp: [{ kind: 'admin-prohibited', from: '192.168.77.1', about: 'tunnel' }] }))!.summary).toMatch(/firewall rejects UDP 8285/);
  });
  it('datagrams from another address: NAT, suggests --public-ip', () => {
    const r = diagnose(ev({ nat: ['203.0.113.7'] }))!;
    expect(r.summary).toMatch(/NAT/);
    expect(r.fix).toMatch(/--public-ip 203\.0\.113\.7/);
  });
  it('underlay answers, tunnel silent, no ICMP: UDP filtered', () => {
    expect(diagnose(ev({ underlay: 3 }))!.summary).toMatch(/UDP 8285 filtered/);
  });
  it('nothing answers: the node is unreachable', () => {
    expect(diagnose(ev({}))!.summary).toMatch(/neither the tunnel nor the underlay/);
  });
  it('a stale lease wins over the other causes and mentions a dead agent; a shadowing route wins over everything', () => {
    const dead = ev({ underlay: 3, icmp: [{ kind: 'port-unreachable', from: '192.168.77.13', about: 'tunnel' }] });
    expect(diagnose(dead, lease(40))!.summary).toMatch(/lease is stale, expires in 40s and nobody renews it \(its agent is not running/);
    expect(diagnose(dead, lease(-30))!.summary).toMatch(/expired 30s ago/);
    expect(diagnose(dead, lease(40), '10.244.3.0/24 dev docker0')!.summary).toMatch(/routed elsewhere \(10\.244\.3\.0\/24 dev docker0\)/);
  });
});

describe('doctor report', () => {
  const c = (verdict: CheckResult['verdict'], id = 'x'): CheckResult => ({ id, title: id, verdict, summary: verdict });
  it('exit code: any failure 1, else anything not checked 2, else 0 (warnings and skips are healthy)', () => {
    expect(exitCodeOf([c('ok'), c('warn'), c('skip')])).toBe(0);
    expect(exitCodeOf([c('ok'), c('error')])).toBe(2);
    expect(exitCodeOf([c('error'), c('fail')])).toBe(1);
  });
  it('prints cause and fix under a failure only', () => {
    const text = formatReport({
      exitCode: 1, generatedAt: '', node: { subnet: '10.244.1.0/24', publicIP: '192.168.77.11', agent: 'x' },
      checks: [{ ...c('ok', 'a'), cause: 'hidden' }, { ...c('fail', 'b'), cause: 'why', fix: 'how', evidence: ['seen'] }],
    });
    expect(text).not.toContain('hidden');
    expect(text).toMatch(/FAIL +b +fail\n +evidence: seen\n +cause: +why\n +fix: +how/);
    expect(text).toContain('PROBLEMS FOUND');
  });
});

describe('diagnosePeer, IPv6', () => {
  const dual = { subnet: parseSubnet('10.244.3.0/24'), subnet6: parseSubnet6('fc00:0:0:3::/64'), publicIP: '192.168.77.13', publicIPv6: 'fd77::13', expiresInSeconds: 86_000 };
  const only6 = { subnet6: parseSubnet6('fc00:0:0:3::/64'), publicIP: '0.0.0.0', publicIPv6: 'fd77::13', expiresInSeconds: 86_000 };
  function ev6(p: { small?: number; small6?: number; full6?: number; underlay?: number; family?: 4 | 6 | 0; icmp?: PeerEvidence['icmp']; v4?: boolean }): PeerEvidence {
    const e = ev({ small: p.small ?? 0, full: p.v4 === false ? null : (p.small ?? 0) > 0 ? 2 : 0, underlay: p.underlay, icmp: p.icmp });
    if (p.v4 === false) e.small = { sent: 0, answered: 0, rtts: [] };
    e.six = { target: 'fc00:0:0:3::', small: { sent: 3, answered: p.small6 ?? 0, rtts: Array(p.small6 ?? 0).fill(0.4) }, full: { sent: 2, answered: p.full6 ?? 0, size: 1452 } };
    e.underlayFamily = p.family ?? 6;
    return e;
  }
  const d6 = (e: PeerEvidence, l: typeof dual | typeof only6 = dual) => diagnosePeer({ lease: l, ev: e }, 8285, '10.244.1.0/24');

  it('healthy on both families', () => {
    expect(d6(ev6({ small: 3, small6: 3, full6: 2, underlay: 3 }))).toBeUndefined();
  });
  it('IPv4 answers, IPv6 does not: the IPv6 side of that peer, named with its IPv6 tunnel address', () => {
    const r = d6(ev6({ small: 3, small6: 0, underlay: 3 }))!;
    expect(r.summary).toBe('fd77::13: IPv6 through the tunnel fails: IPv4 probes pass, ICMPv6 echo to fc00:0:0:3:: gets no answer');
    expect(r.peer).toEqual({ subnet: '10.244.3.0/24', publicIP: '192.168.77.13', publicIPv6: 'fd77::13' });
  });
  it('IPv6 underlay: filtered, port-unreachable and firewall texts name UDP/IPv6 and ICMPv6', () => {
    expect(d6(ev6({ underlay: 3 }))!.summary).toBe('fd77::13: UDP/IPv6 8285 filtered: the node answers on the IPv6 underlay, the tunnel stays silent');
    expect(d6(ev6({ underlay: 3, icmp: [{ kind: 'port-unreachable', from: 'fd77::13', about: 'tunnel', family: 6 }] }))!.summary)
      .toBe('fd77::13: agent not running there (ICMPv6 port-unreachable from fd77::13 for UDP/IPv6 8285)');
    expect(d6(ev6({ underlay: 3, icmp: [{ kind: 'reject-route', from: 'fd77::1', about: 'tunnel', family: 6 }] }))!.summary).toMatch(/a firewall rejects UDP\/IPv6 8285/);
    expect(d6(ev6({}))!.summary).toBe('fd77::13: unreachable, neither the tunnel nor the IPv6 underlay answers');
  });
  it('IPv6-only overlay: the IPv6 probes alone decide; MTU with the IPv6 overhead', () => {
    expect(d6(ev6({ v4: false, small6: 3, full6: 2, underlay: 3 }), only6)).toBeUndefined();
    const mtu = d6(ev6({ v4: false, small6: 3, full6: 0, underlay: 3, icmp: [{ kind: 'packet-too-big', from: 'fd77::1', about: 'tunnel', mtu: 1400, family: 6 }] }), only6)!;
    expect(mtu.title).toBe('peer fc00:0:0:3::/64');
    expect(mtu.summary).toBe('fd77::13: path MTU too small for IPv6: small ICMPv6 probes pass, full-size 1452-byte probes are lost');
    expect(mtu.cause).toMatch(/carries less than 1500 bytes \(a hop says 1400\)/);
    expect(d6(ev6({ v4: false, small6: 2, full6: 2, underlay: 3 }), only6)!.summary).toBe('fd77::13: lossy, 2 of 3 ICMPv6 probes answered');
  });
  it('NAT on the IPv6 underlay: named with the family, suggests --public-ipv6', () => {
    const e = ev6({ underlay: 0 });
    e.natFrom = new Set(['fd77::99']);
    const r = d6(e)!;
    expect(r.summary).toBe("fd77::13: NAT on the IPv6 underlay, its datagrams arrive from fd77::99 but its lease's PublicIPv6 is fd77::13");
    expect(r.fix).toMatch(/--public-ipv6 fd77::99/);
    expect(r.evidence?.join('\n')).toContain("its datagrams arrive from fd77::99, not from its lease's PublicIPv6 fd77::13");
  });
  it('no underlay family in common', () => {
    expect(d6(ev6({ family: 0 }), only6)!.summary).toMatch(/^fd77::13: no underlay family in common: it has only an IPv6 underlay address/);
  });
});
