// A strict parser of the Prometheus text exposition format (version 0.0.4), for tests: it throws
// on anything a Prometheus server would reject or that the format forbids (bad names, label syntax
// or escapes, unparsable values, duplicate series, TYPE after samples, a family split in two,
// samples whose name does not fit the declared type).

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  type: 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';
  help?: string;
  samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

/** Values follow Go's strconv.ParseFloat (what Prometheus uses): NaN and Inf in any letter case. */
function parseValue(text: string, where: string): number {
  if (/^nan$/i.test(text)) return NaN;
  if (/^\+?inf(inity)?$/i.test(text)) return Infinity;
  if (/^-inf(inity)?$/i.test(text)) return -Infinity;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text)) throw new Error(`${where}: bad value "${text}"`);
  return Number(text);
}

/** Parses `{a="x",b="y"}` starting at `i` (the "{"); returns the labels and the index after "}". */
function parseLabels(line: string, i: number, where: string): { labels: Record<string, string>; next: number } {
  const labels: Record<string, string> = {};
  i++; // "{"
  for (;;) {
    if (line[i] === '}') return { labels, next: i + 1 };
    const m = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(line.slice(i));
    if (!m) throw new Error(`${where}: bad label name at column ${i}`);
    const name = m[0];
    if (!LABEL_NAME.test(name) || name.startsWith('__')) throw new Error(`${where}: reserved or bad label name "${name}"`);
    if (name in labels) throw new Error(`${where}: label "${name}" repeated`);
    i += name.length;
    if (line[i] !== '=' || line[i + 1] !== '"') throw new Error(`${where}: expected ="..." after label ${name}`);
    i += 2;
    let value = '';
    for (;;) {
      const c = line[i];
      if (c === undefined) throw new Error(`${where}: unterminated label value`);
      if (c === '"') break;
      if (c === '\\') {
        const n = line[i + 1];
        if (n === '\\') value += '\\';
        else if (n === '"') value += '"';
        else if (n === 'n') value += '\n';
        else throw new Error(`${where}: bad escape \\${n ?? ''} in label value`);
        i += 2;
        continue;
      }
      value += c;
      i++;
    }
    labels[name] = value;
    i++; // closing quote
    if (line[i] === ',') {
      i++;
      continue;
    }
    if (line[i] !== '}') throw new Error(`${where}: expected , or } after label value`);
  }
}

function sampleFits(family: Family, sampleName: string, labels: Record<string, string>): boolean {
  const base = family.name;
  switch (family.type) {
    case 'histogram':
      if (sampleName === `${base}_bucket`) return 'le' in labels;
      return sampleName === `${base}_sum` || sampleName === `${base}_count`;
    case 'summary':
      if (sampleName === base) return 'quantile' in labels;
      return sampleName === `${base}_sum` || sampleName === `${base}_count`;
    default:
      return sampleName === base;
  }
}

export function parsePrometheusText(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const closed = new Set<string>(); // families whose samples ended (a later sample would split them)
  const seen = new Set<string>();
  const typed = new Set<string>();
  let current: Family | undefined;
  if (!text.endsWith('\n')) throw new Error('exposition must end with a newline');

  const family = (name: string, where: string): Family => {
    if (!METRIC_NAME.test(name)) throw new Error(`${where}: bad metric name "${name}"`);
    let f = families.get(name);
    if (!f) {
      f = { name, type: 'untyped', samples: [] };
      families.set(name, f);
    }
    return f;
  };

  text.split('\n').forEach((raw, index) => {
    const where = `line ${index + 1}`;
    const line = raw;
    if (line.trim() === '') return;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(line);
      if (!m) return; // an ordinary comment
      const [, kind, name, rest] = m;
      const f = family(name!, where);
      if (kind === 'HELP') {
        if (f.help !== undefined) throw new Error(`${where}: second HELP for ${name}`);
        f.help = rest ?? '';
      } else {
        if (!rest || !TYPES.has(rest)) throw new Error(`${where}: bad TYPE "${rest}" for ${name}`);
        if (f.samples.length > 0) throw new Error(`${where}: TYPE for ${name} after its samples`);
        if (typed.has(f.name)) throw new Error(`${where}: second TYPE for ${name}`);
        f.type = rest as Family['type'];
        typed.add(f.name);
      }
      return;
    }

    const nm = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
    if (!nm) throw new Error(`${where}: bad sample line "${line}"`);
    const sampleName = nm[0];
    let i = sampleName.length;
    let labels: Record<string, string> = {};
    if (line[i] === '{') {
      const parsed = parseLabels(line, i, where);
      labels = parsed.labels;
      i = parsed.next;
    }
    const rest = line.slice(i);
    const vm = /^ (\S+)(?: (-?\d+))?$/.exec(rest);
    if (!vm) throw new Error(`${where}: expected " value [timestamp]" after ${sampleName}, got "${rest}"`);
    const value = parseValue(vm[1]!, where);

    // Which family does this sample belong to? The current one if it fits, else its own name.
    let f: Family | undefined;
    if (current && sampleFits(current, sampleName, labels)) f = current;
    for (const suffix of ['_bucket', '_sum', '_count']) {
      if (f || !sampleName.endsWith(suffix)) continue;
      const base = families.get(sampleName.slice(0, -suffix.length));
      if (base && (base.type === 'histogram' || base.type === 'summary')) f = base;
    }
    f ??= families.get(sampleName) ?? family(sampleName, where);
    if (!sampleFits(f, sampleName, labels)) throw new Error(`${where}: sample ${sampleName} does not fit ${f.type} ${f.name}`);
    if (f !== current) {
      if (current) closed.add(current.name);
      if (closed.has(f.name)) throw new Error(`${where}: samples of ${f.name} are not contiguous`);
      current = f;
    }
    const key = `${sampleName}${JSON.stringify(Object.entries(labels).sort())}`;
    if (seen.has(key)) throw new Error(`${where}: duplicate series ${sampleName}${JSON.stringify(labels)}`);
    seen.add(key);
    if (f.type === 'counter' && !(value >= 0)) throw new Error(`${where}: counter ${f.name} has value ${value}`);
    f.samples.push({ name: sampleName, labels, value });
  });
  return families;
}

/** The value of the one sample of `name` whose labels include `labels`; throws if not exactly one. */
export function sampleValue(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number {
  const f = families.get(name);
  if (!f) throw new Error(`no metric family ${name}`);
  const hits = f.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (hits.length !== 1) throw new Error(`${name}${JSON.stringify(labels)}: ${hits.length} samples match`);
  return hits[0]!.value;
}
