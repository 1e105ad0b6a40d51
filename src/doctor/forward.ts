// What the iptables FORWARD chain does to pod traffic between nodes. Walks the filter table as
// `iptables-save -t filter` prints it, for one new connection in each direction (pod -> remote pod
// out through the TUN, remote pod -> pod in from the TUN), following jumps into user chains. Matches
// it can decide (addresses, interfaces, conntrack state of a new connection) are decided; others
// (marks, sets, protocols...) "may match": they never count as an accept, and a DROP behind one is
// reported as uncertain rather than guessed.
import { parseIPv4, prefixMask } from '../net/cidr.js';

export interface Flow {
  src: string;
  dst: string;
  /** In and out interfaces; '' when unknown (then an interface match "may match"). */
  in: string;
  out: string;
}

export type ForwardOutcome =
  | { result: 'accept'; by: string }
  | { result: 'drop'; by: string }
  | { result: 'uncertain'; by: string; why: string };

interface Rule {
  text: string;
  args: string[];
}

export interface FilterTable {
  policies: Map<string, string>;
  chains: Map<string, Rule[]>;
}

/** Splits an iptables-save rule line into arguments (double quotes group, as iptables-save writes them). */
export function splitArgs(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  let has = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (ch === '\\' && quoted && i + 1 < line.length) {
      cur += line[++i];
    } else if (ch === '"') {
      quoted = !quoted;
      has = true;
    } else if (/\s/.test(ch) && !quoted) {
      if (has || cur) out.push(cur);
      cur = '';
      has = false;
    } else {
      cur += ch;
      has = true;
    }
  }
  if (has || cur) out.push(cur);
  return out;
}

/** Parses the *filter section of iptables-save output. */
export function parseFilterTable(text: string): FilterTable {
  const policies = new Map<string, string>();
  const chains = new Map<string, Rule[]>();
  let inFilter = false;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('*')) inFilter = line === '*filter';
    if (!inFilter) continue;
    if (line.startsWith(':')) {
      const [name, policy] = line.slice(1).split(/\s+/);
      if (name) {
        chains.set(name, chains.get(name) ?? []);
        if (policy && policy !== '-') policies.set(name, policy);
      }
    } else if (line.startsWith('-A ')) {
      const args = splitArgs(line);
      const chain = args[1]!;
      if (!chains.has(chain)) chains.set(chain, []);
      chains.get(chain)!.push({ text: line, args: args.slice(2) });
    }
  }
  return { policies, chains };
}

type Match = 'yes' | 'no' | 'maybe';

function addrMatches(spec: string, ip: string): boolean {
  const [base, len] = spec.split('/');
  let prefix = 32;
  if (len !== undefined) {
    if (/^\d+$/.test(len)) prefix = Number(len);
    else prefix = 32 - Math.log2(((~parseIPv4(len)) >>> 0) + 1); // dotted mask
  }
  const mask = prefixMask(prefix);
  return ((parseIPv4(base!) & mask) >>> 0) === ((parseIPv4(ip) & mask) >>> 0);
}

function ifaceMatches(spec: string, name: string): Match {
  if (!name) return 'maybe';
  if (spec.endsWith('+')) return name.startsWith(spec.slice(0, -1)) ? 'yes' : 'no';
  return spec === name ? 'yes' : 'no';
}

/** Conntrack states of a new connection's first packet. */
function stateMatches(states: string): Match {
  return states.split(',').some((s) => s.trim().toUpperCase() === 'NEW') ? 'yes' : 'no';
}

/** Decides one rule's matches for the flow; returns the verdict and the target. */
function evaluate(rule: Rule, flow: Flow): { match: Match; target?: string; why?: string } {
  const a = rule.args;
  let result: Match = 'yes';
  let why: string | undefined;
  const combine = (m: Match, negate: boolean, what: string) => {
    const v: Match = m === 'maybe' ? 'maybe' : (m === 'yes') !== negate ? 'yes' : 'no';
    if (v === 'no') result = 'no';
    else if (v === 'maybe' && result === 'yes') {
      result = 'maybe';
      why = what;
    }
  };
  let target: string | undefined;
  for (let i = 0; i < a.length; i++) {
    let negate = false;
    if (a[i] === '!') {
      negate = true;
      i++;
    }
    const opt = a[i]!;
    const val = a[i + 1] ?? '';
    switch (opt) {
      case '-s': case '--source': combine(addrMatches(val, flow.src) ? 'yes' : 'no', negate, opt); i++; break;
      case '-d': case '--destination': combine(addrMatches(val, flow.dst) ? 'yes' : 'no', negate, opt); i++; break;
      case '-i': case '--in-interface': combine(ifaceMatches(val, flow.in), negate, `-i ${val}`); i++; break;
      case '-o': case '--out-interface': combine(ifaceMatches(val, flow.out), negate, `-o ${val}`); i++; break;
      case '-p': case '--protocol': combine(val === 'all' || val === '0' ? 'yes' : 'maybe', negate, `-p ${val}`); i++; break;
      case '-j': case '--jump': case '-g': case '--goto':
        // iptables-save writes the target last; what follows are its options (--reject-with ...).
        return { match: result, target: val, why };
      case '-m': case '--match': i++; break; // the module's own options follow
      case '--ctstate': case '--state': combine(stateMatches(val), negate, `${opt} ${val}`); i++; break;
      case '--comment': i++; break;
      default:
        if (opt.startsWith('-')) {
          // An option we cannot decide (marks, sets, physdev, limits...): skip its value(s).
          combine('maybe', negate, opt);
          while (i + 1 < a.length && !a[i + 1]!.startsWith('-') && a[i + 1] !== '!') i++;
        }
    }
  }
  return { match: result, target, why };
}

/** Walks `chain` for the flow; undefined means the chain fell through (RETURN to the caller). */
function walk(t: FilterTable, chain: string, flow: Flow, depth: number): ForwardOutcome | undefined {
  if (depth > 16) return { result: 'uncertain', by: chain, why: 'chains nest deeper than 16' };
  // A DROP that may apply, met before the deciding rule: it turns a later accept into "uncertain".
  let doubt: { by: string; why: string } | undefined;
  const decided = (o: ForwardOutcome): ForwardOutcome => (o.result === 'accept' && doubt ? { result: 'uncertain', ...doubt } : o);
  for (const rule of t.chains.get(chain) ?? []) {
    const { match, target, why } = evaluate(rule, flow);
    if (match === 'no' || !target) continue;
    let outcome: ForwardOutcome | undefined;
    if (target === 'ACCEPT') outcome = { result: 'accept', by: rule.text };
    else if (target === 'DROP' || target === 'REJECT') outcome = { result: 'drop', by: rule.text };
    else if (target === 'RETURN') {
      if (match === 'yes') return doubt ? { result: 'uncertain', ...doubt } : undefined;
      continue;
    } else if (t.chains.has(target)) {
      outcome = walk(t, target, flow, depth + 1);
      if (!outcome) continue;
    } else {
      continue; // LOG, MARK and other non-terminating targets
    }
    if (match === 'yes') return decided(outcome);
    // The rule may not apply: an accept behind it proves nothing, a drop behind it is a doubt.
    if (outcome.result !== 'accept') doubt ??= { by: outcome.by, why: `may apply (${why ?? 'undecidable match'})` };
  }
  if (doubt) return { result: 'uncertain', ...doubt };
  return undefined;
}

/** What the FORWARD chain does to `flow`: the deciding rule, or the policy. */
export function forwardOutcome(t: FilterTable, flow: Flow): ForwardOutcome {
  const r = walk(t, 'FORWARD', flow, 0);
  if (r) return r;
  const policy = t.policies.get('FORWARD') ?? 'ACCEPT';
  return policy === 'ACCEPT' ? { result: 'accept', by: 'policy ACCEPT' } : { result: 'drop', by: `policy ${policy}` };
}
