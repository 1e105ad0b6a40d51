// Command-line flags: flanneld's names and defaults where they apply, plus felt's own.
// Every flag can also come from FLANNELD_<NAME> ("-" -> "_", upper case), as flanneld does;
// the command line wins over the environment. One table drives parsing, defaults and --help.

export type FlagType = 'string' | 'boolean' | 'number' | 'list';

export interface FlagSpec {
  name: string;
  type: FlagType;
  default: string | boolean | number | string[];
  help: string;
  /** Allowed values (strings only). */
  choices?: readonly string[];
  /** Inclusive range (numbers only). */
  range?: [number, number];
}

const RUN_FLAGS: FlagSpec[] = [
  { name: 'etcd-endpoints', type: 'string', default: 'http://127.0.0.1:4001,http://127.0.0.1:2379', help: 'comma-separated etcd endpoints (http://, https:// or unix:///path)' },
  { name: 'etcd-prefix', type: 'string', default: '/coreos.com/network', help: 'etcd key prefix holding config and subnets/' },
  { name: 'etcd-keyfile', type: 'string', default: '', help: 'TLS client key file for etcd' },
  { name: 'etcd-certfile', type: 'string', default: '', help: 'TLS client certificate file for etcd' },
  { name: 'etcd-cafile', type: 'string', default: '', help: 'TLS CA file to verify etcd' },
  { name: 'etcd-username', type: 'string', default: '', help: 'etcd basic-auth user name' },
  { name: 'etcd-password', type: 'string', default: '', help: 'etcd basic-auth password' },
  { name: 'kube-subnet-mgr', type: 'boolean', default: false, help: 'take the subnet from the Kubernetes API (node spec.podCIDR) instead of etcd' },
  { name: 'kube-api-url', type: 'string', default: '', help: 'Kubernetes API server URL (not needed in a pod)' },
  { name: 'kubeconfig-file', type: 'string', default: '', help: 'kubeconfig file (not needed in a pod)' },
  { name: 'kube-annotation-prefix', type: 'string', default: 'flannel.alpha.coreos.com', help: 'prefix of the node annotations felt reads and writes' },
  { name: 'net-config-path', type: 'string', default: '/etc/kube-flannel/net-conf.json', help: 'network config file (Kubernetes mode)' },
  { name: 'set-node-network-unavailable', type: 'boolean', default: true, help: 'set the NetworkUnavailable=False node condition once up (Kubernetes mode)' },
  { name: 'iface', type: 'list', default: [], help: 'interface (name, IPv4 or IPv6 address) for inter-node traffic; repeatable, first match wins' },
  { name: 'iface-regex', type: 'list', default: [], help: 'regex matched against interface IPv4 addresses, IPv6 addresses, then names; repeatable' },
  { name: 'public-ip', type: 'string', default: '', help: 'IP advertised to peers (the lease identity); default: the interface address' },
  { name: 'public-ipv6', type: 'string', default: '', help: 'IPv6 address advertised to peers (EnableIPv6); default: the interface\'s global IPv6 address' },
  { name: 'subnet-file', type: 'string', default: '/run/flannel/subnet.env', help: 'file the CNI plugin reads the subnet from' },
  { name: 'subnet-lease-renew-margin', type: 'number', default: 60, range: [1, 1439], help: 'renew the lease this many minutes before it expires' },
  { name: 'ip-masq', type: 'boolean', default: false, help: 'masquerade traffic leaving the overlay network' },
  { name: 'ip-masq-fully-random-disable', type: 'boolean', default: false, help: 'do not use --random-fully for MASQUERADE even where iptables supports it' },
  { name: 'iptables-forward-rules', type: 'boolean', default: true, help: 'add FORWARD accept rules for the overlay network' },
  { name: 'iptables-resync', type: 'number', default: 5, range: [1, 3600], help: 'seconds between checks that the iptables rules are in place' },
  { name: 'healthz-ip', type: 'string', default: '0.0.0.0', help: 'address of the /healthz and /readyz server' },
  { name: 'healthz-port', type: 'number', default: 0, range: [0, 65535], help: 'port of the /healthz and /readyz server (0 = disabled)' },
  { name: 'engine', type: 'string', default: 'native', choices: ['native', 'js'], help: 'data path: native (C threads, offloads) or js (per-packet decisions in JavaScript, the readable reference; I/O batched in C)' },
  { name: 'datapath-threads', type: 'number', default: 1, range: [1, 2], help: 'native engine packet threads: 1 = one thread serves both directions (fewest wake-ups per round trip: lowest latency), 2 = one thread per direction (for heavy traffic both ways at once on a machine with cores to spare)' },
  { name: 'tun-name', type: 'string', default: 'flannel0', help: 'name of the TUN device' },
  { name: 'debug-addr', type: 'string', default: '127.0.0.1:8286', help: 'debug server (/leases, /metrics, /healthz, /readyz): host:port, unix:/path, or "" to disable' },
  { name: 'startup-timeout', type: 'number', default: 30, range: [1, 86400], help: 'seconds to keep retrying the store (config, lease) at start before giving up' },
  { name: 'probe', type: 'boolean', default: true, help: 'probe every peer through the overlay (ICMP echo from our TUN address to theirs, plus a full-size DF probe); shown in /leases and /metrics' },
  { name: 'probe-interval', type: 'number', default: 10, range: [1, 3600], help: 'seconds between probes of one peer (stretched when --probe-max-rate caps it)' },
  { name: 'probe-max-rate', type: 'number', default: 20, range: [1, 1000], help: 'probes per second at most, all peers together' },
  { name: 'log-level', type: 'string', default: 'info', choices: ['trace', 'debug', 'info', 'warn', 'error', 'fatal'], help: 'level of the JSON logs written to stderr' },
];

const LEASES_FLAGS: FlagSpec[] = [
  ...RUN_FLAGS.filter((f) => f.name.startsWith('etcd-')),
  { name: 'agent', type: 'string', default: '', help: 'read from a running agent instead of etcd: http://host:port or unix:/path' },
  { name: 'json', type: 'boolean', default: false, help: 'print JSON instead of a table' },
];

const DOCTOR_FLAGS: FlagSpec[] = [
  { name: 'agent', type: 'string', default: '', help: 'the local agent\'s debug server: http://host:port or unix:/path (default: --debug-addr)' },
  { name: 'debug-addr', type: 'string', default: '127.0.0.1:8286', help: 'the agent\'s --debug-addr, where --agent is looked for by default' },
  ...RUN_FLAGS.filter((f) => f.name.startsWith('etcd-')).map((f) => (f.name === 'etcd-endpoints'
    ? { ...f, default: '', help: 'read etcd directly at these endpoints (default: only when the agent does not answer, then flannel\'s defaults)' }
    : f)),
  { name: 'tun-name', type: 'string', default: 'flannel0', help: 'name of the TUN device when the agent does not answer' },
  { name: 'subnet-file', type: 'string', default: '/run/flannel/subnet.env', help: 'subnet.env to read when the agent does not answer' },
  { name: 'timeout', type: 'number', default: 3, range: [1, 60], help: 'seconds to wait for probe answers' },
  { name: 'json', type: 'boolean', default: false, help: 'print the report as JSON' },
];

export const COMMANDS: Record<string, { summary: string; flags: FlagSpec[] }> = {
  run: { summary: 'run the overlay agent on this node', flags: RUN_FLAGS },
  leases: { summary: 'print the lease table (from etcd or from a running agent)', flags: LEASES_FLAGS },
  doctor: { summary: 'check this node and name the cause when pods cannot reach other nodes (exit 0 healthy, 1 problem, 2 not checked)', flags: DOCTOR_FLAGS },
};

export type FlagValues = Record<string, string | boolean | number | string[]>;

export class FlagError extends Error {}

function envName(flag: string): string {
  return `FLANNELD_${flag.toUpperCase().replace(/-/g, '_')}`;
}

function convert(spec: FlagSpec, raw: string, origin: string): string | boolean | number {
  switch (spec.type) {
    case 'boolean': {
      const v = raw.toLowerCase();
      if (['true', '1', 'yes'].includes(v)) return true;
      if (['false', '0', 'no'].includes(v)) return false;
      throw new FlagError(`${origin}: expected true or false, got "${raw}"`);
    }
    case 'number': {
      if (!/^-?\d+$/.test(raw.trim())) throw new FlagError(`${origin}: expected a whole number, got "${raw}"`);
      const n = Number(raw);
      if (spec.range && (n < spec.range[0] || n > spec.range[1])) {
        throw new FlagError(`${origin}: ${n} is outside ${spec.range[0]}..${spec.range[1]}`);
      }
      return n;
    }
    default:
      if (spec.choices && !spec.choices.includes(raw)) {
        throw new FlagError(`${origin}: must be one of ${spec.choices.join(', ')}, got "${raw}"`);
      }
      return raw;
  }
}

/**
 * Parses `argv` (without the command name) for `command`. Accepts `--name value`, `--name=value`,
 * and `--flag` / `--flag=false` for booleans; `-name` (Go style, as in flannel manifests) too.
 */
export function parseFlags(command: string, argv: string[], env: NodeJS.ProcessEnv = process.env): FlagValues {
  const cmd = COMMANDS[command];
  if (!cmd) throw new FlagError(`unknown command "${command}"`);
  const specs = new Map(cmd.flags.map((f) => [f.name, f]));
  const values: FlagValues = {};
  const lists = new Map<string, string[]>();

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const m = /^--?([a-z0-9][a-z0-9-]*)(?:=(.*))?$/s.exec(arg);
    if (!m) throw new FlagError(`unexpected argument "${arg}" (flags look like --name=value)`);
    const name = m[1]!;
    const spec = specs.get(name);
    if (!spec) throw new FlagError(`unknown flag --${name} for "felt ${command}" (see felt ${command} --help)`);
    let raw = m[2];
    if (raw === undefined) {
      if (spec.type === 'boolean') raw = 'true';
      else if (i + 1 < argv.length) raw = argv[++i]!;
      else throw new FlagError(`--${name} needs a value`);
    }
    const value = convert(spec, raw, `--${name}`);
    if (spec.type === 'list') lists.set(name, [...(lists.get(name) ?? []), String(value)]);
    else values[name] = value;
  }
  for (const [name, list] of lists) values[name] = list;

  for (const spec of cmd.flags) {
    if (spec.name in values) continue;
    const fromEnv = env[envName(spec.name)];
    if (fromEnv !== undefined && fromEnv !== '') {
      const origin = envName(spec.name);
      values[spec.name] = spec.type === 'list'
        ? fromEnv.split(',').map((s) => s.trim()).filter(Boolean)
        : convert(spec, fromEnv, origin);
    } else {
      values[spec.name] = Array.isArray(spec.default) ? [...spec.default] : spec.default;
    }
  }
  return values;
}

export function helpText(command?: string): string {
  if (!command || !COMMANDS[command]) {
    const lines = ['felt: userspace overlay network agent (flannel UDP backend compatible)', '', 'Usage: felt <command> [flags]', '', 'Commands:'];
    for (const [name, c] of Object.entries(COMMANDS)) lines.push(`  ${name.padEnd(8)} ${c.summary}`);
    lines.push('', 'Run "felt <command> --help" for its flags. Every flag can also be set as', 'FLANNELD_<NAME> in the environment (e.g. FLANNELD_ETCD_ENDPOINTS); flags win.');
    return lines.join('\n');
  }
  const c = COMMANDS[command]!;
  const lines = [`Usage: felt ${command} [flags]`, '', c.summary, '', 'Flags:'];
  for (const f of c.flags) {
    const def = Array.isArray(f.default) ? (f.default.length ? f.default.join(',') : '') : String(f.default);
    const kind = f.type === 'boolean' ? '' : f.type === 'list' ? ' <value>...' : ' <value>';
    lines.push(`  --${f.name}${kind}`);
    lines.push(`      ${f.help}${f.choices ? ` (${f.choices.join('|')})` : ''}${def !== '' ? ` [default: ${def}]` : ''}  env: ${envName(f.name)}`);
  }
  return lines.join('\n');
}
