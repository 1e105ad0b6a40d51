import { describe, expect, it } from 'vitest';
import { forwardOutcome, parseFilterTable, splitArgs, type Flow } from '../../src/doctor/forward.js';

const OUT: Flow = { src: '10.244.1.2', dst: '10.244.2.2', in: 'cni0', out: 'flannel0' };
const IN: Flow = { src: '10.244.2.2', dst: '10.244.1.2', in: 'flannel0', out: 'cni0' };

function table(policy: string, ...rules: string[]): string {
  const chains = new Set(rules.map((r) => r.split(/\s+/)[1]!).filter((c) => c !== 'FORWARD'));
  return ['*filter', ':INPUT ACCEPT [0:0]', `:FORWARD ${policy} [0:0]`, ':OUTPUT ACCEPT [0:0]', ...[...chains].map((c) => `:${c} - [0:0]`), ...rules, 'COMMIT', ''].join('\n');
}

describe('FORWARD chain evaluation', () => {
  it('policy decides when no rule matches', () => {
    expect(forwardOutcome(parseFilterTable(table('ACCEPT')), OUT)).toEqual({ result: 'accept', by: 'policy ACCEPT' });
    expect(forwardOutcome(parseFilterTable(table('DROP')), IN)).toEqual({ result: 'drop', by: 'policy DROP' });
  });

  it("felt's FELT-FWD rules accept both ways despite policy DROP", () => {
    const t = parseFilterTable(table('DROP',
      '-A FORWARD -m comment --comment "felt forward" -j FELT-FWD',
      '-A FELT-FWD -s 10.244.0.0/16 -m comment --comment "felt forward" -j ACCEPT',
      '-A FELT-FWD -d 10.244.0.0/16 -m comment --comment "felt forward" -j ACCEPT'));
    expect(forwardOutcome(t, OUT).result).toBe('accept');
    expect(forwardOutcome(t, IN).result).toBe('accept');
  });

  it('kube-proxy and docker rules: INVALID drops and ESTABLISHED accepts do not decide a new connection; a mark accept is not an accept', () => {
    const t = parseFilterTable(table('DROP',
      '-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
      '-A FORWARD -j DOCKER-USER',
      '-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
      '-A FORWARD -i docker0 ! -o docker0 -j ACCEPT',
      '-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP',
      '-A KUBE-FORWARD -m mark --mark 0x4000/0x4000 -j ACCEPT',
      '-A KUBE-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
      '-A DOCKER-USER -j RETURN'));
    expect(forwardOutcome(t, OUT)).toEqual({ result: 'drop', by: 'policy DROP' });
  });

  it('a DROP whose match cannot be decided makes a later accept uncertain; a negated interface match is decided', () => {
    const t = parseFilterTable(table('ACCEPT', '-A FORWARD -m set --match-set blocked src -j DROP'));
    expect(forwardOutcome(t, OUT)).toMatchObject({ result: 'uncertain', by: '-A FORWARD -m set --match-set blocked src -j DROP' });
    const t2 = parseFilterTable(table('ACCEPT', '-A FORWARD ! -i flannel0 -d 10.244.2.0/24 -j DROP'));
    expect(forwardOutcome(t2, OUT).result).toBe('drop');
    expect(forwardOutcome(t2, IN).result).toBe('accept');
  });

  it('reads quoted comments and interface wildcards', () => {
    expect(splitArgs('-A FORWARD -m comment --comment "a b" -i cni+ -j REJECT')).toEqual(['-A', 'FORWARD', '-m', 'comment', '--comment', 'a b', '-i', 'cni+', '-j', 'REJECT']);
    const t = parseFilterTable(table('ACCEPT', '-A FORWARD -i cni+ -o flannel+ -j REJECT --reject-with icmp-port-unreachable'));
    expect(forwardOutcome(t, OUT).result).toBe('drop');
    expect(forwardOutcome(t, IN).result).toBe('accept');
  });
});
