import { describe, expect, it } from 'vitest';
import { COMMANDS, FlagError, helpText, parseFlags } from '../../src/flags.js';

describe('flags', () => {
  it('applies flannel defaults', () => {
    const v = parseFlags('run', [], {});
    expect(v['etcd-endpoints']).toBe('http://127.0.0.1:4001,http://127.0.0.1:2379');
    expect(v['etcd-prefix']).toBe('/coreos.com/network');
    expect(v['subnet-file']).toBe('/run/flannel/subnet.env');
    expect(v['subnet-lease-renew-margin']).toBe(60);
    expect(v['healthz-port']).toBe(0);
    expect(v['tun-name']).toBe('flannel0');
    expect(v['iface']).toEqual([]);
  });

  it('accepts --name value, --name=value, Go-style -name and bare booleans', () => {
    const v = parseFlags('run', ['--etcd-prefix', '/x', '--tun-name=t0', '-ip-masq', '--kube-subnet-mgr=false', '--engine=js'], {});
    expect(v['etcd-prefix']).toBe('/x');
    expect(v['tun-name']).toBe('t0');
    expect(v['ip-masq']).toBe(true);
    expect(v['kube-subnet-mgr']).toBe(false);
    expect(v['engine']).toBe('js');
  });

  it('takes --public-ipv6 (and FLANNELD_PUBLIC_IPV6) into the agent settings', async () => {
    const { agentSettings } = await import('../../src/settings.js');
    expect(agentSettings(parseFlags('run', ['--public-ipv6', 'fd00::2'], {}), {}).publicIPv6).toBe('fd00::2');
    expect(agentSettings(parseFlags('run', [], { FLANNELD_PUBLIC_IPV6: 'fd00::3' }), {}).publicIPv6).toBe('fd00::3');
    expect(agentSettings(parseFlags('run', [], {}), {}).publicIPv6).toBeUndefined();
  });

  it('collects repeated --iface', () => {
    expect(parseFlags('run', ['--iface', 'eth0', '--iface=10.0.0.1'], {})['iface']).toEqual(['eth0', '10.0.0.1']);
  });

  it('reads FLANNELD_* env vars, and the command line wins', () => {
    const env = { FLANNELD_ETCD_PREFIX: '/from-env', FLANNELD_IP_MASQ: 'true', FLANNELD_IFACE: 'eth1,eth2', FLANNELD_TUN_NAME: 'envtun' };
    const v = parseFlags('run', ['--tun-name', 'cli'], env);
    expect(v['etcd-prefix']).toBe('/from-env');
    expect(v['ip-masq']).toBe(true);
    expect(v['iface']).toEqual(['eth1', 'eth2']);
    expect(v['tun-name']).toBe('cli');
  });

  it('rejects bad input with a clear message', () => {
    expect(() => parseFlags('run', ['--nope'], {})).toThrow(/unknown flag --nope/);
    expect(() => parseFlags('run', ['--engine', 'fast'], {})).toThrow(/must be one of native, js/);
    expect(() => parseFlags('run', ['--subnet-lease-renew-margin', '0'], {})).toThrow(/outside 1..1439/);
    expect(() => parseFlags('run', ['--healthz-port', 'abc'], {})).toThrow(FlagError);
    expect(() => parseFlags('run', ['--etcd-prefix'], {})).toThrow(/needs a value/);
    expect(() => parseFlags('run', ['stray'], {})).toThrow(/unexpected argument/);
    expect(() => parseFlags('run', [], { FLANNELD_IP_MASQ: 'maybe' })).toThrow(/FLANNELD_IP_MASQ/);
  });

  it('documents every flag in --help', () => {
    for (const [name, command] of Object.entries(COMMANDS)) {
      const text = helpText(name);
      for (const flag of command.flags) {
        expect(text).toContain(`--${flag.name}`);
        expect(flag.help.length).toBeGreaterThan(10);
      }
    }
  });
});
