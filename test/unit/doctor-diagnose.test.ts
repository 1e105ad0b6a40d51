// The per-peer verdict from made-up evidence: each cause felt doctor knows, and the order they win in.
import { describe, expect, it } from 'vitest';
import { diagnosePeer, emptyEvidence, type PeerEvidence } from '../../src/doctor/peers.js';
import { formatReport } from '../../src/doctor/report.js';
import { exitCodeOf, type CheckResult } from '../../src/doctor/types.js';
import { parseSubnet } from '../../src/net/cidr.js';

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
