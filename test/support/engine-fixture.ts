// The engine tests' common set-up: the variants each suite runs under, the fixture that hosts an
// engine in a namespace (fixtures/engine-node.mjs, which imports the COMPILED engine from dist/),
// and its start-up check and teardown.
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { DatapathStats } from '../../src/datapath/types.js';
import type { ExecResult, Netns } from '../testbed/netns.js';
import { repoRoot } from '../testbed/tcp.js';
import { FixtureDriver } from './driver.js';

const ENGINE_FIXTURE = path.join(repoRoot(), 'test/support/fixtures/engine-node.mjs');
const DIST_ENTRY = path.join(repoRoot(), 'dist/src/datapath/index.js');

// The native engine runs each suite twice: with its default single packet thread and with a
// thread per direction (--datapath-threads 2).
export const VARIANTS = [
  { engine: 'js', label: 'js', threads: undefined },
  { engine: 'native', label: 'native', threads: undefined },
  { engine: 'native', label: 'native, a thread per direction', threads: 2 },
] as const;
export type Variant = (typeof VARIANTS)[number];

/** Throws unless dist/ is built (`npm test` builds first, else run `npm run build`). */
export function requireBuild(): void {
  if (!existsSync(DIST_ENTRY)) throw new Error(`${DIST_ENTRY} missing: run \`npm run build\` first`);
}

/** Starts the fixture for `v` in `ns` with the DatapathConfig fields in `config` (not yet the engine: call 'start'). */
export function spawnEngine(ns: Netns, v: Variant, config: Record<string, unknown>): FixtureDriver {
  const options = v.threads ? { threads: v.threads } : {};
  return FixtureDriver.spawn(ns, ENGINE_FIXTURE, [JSON.stringify({ engine: v.engine, ...config, options })]);
}

/** Ends the fixtures (those that started), waits for them, then deletes the namespaces. */
export async function stopEngines(nodes: Array<FixtureDriver | undefined>, spaces: Array<Netns | undefined>): Promise<void> {
  const started = nodes.filter((n): n is FixtureDriver => n !== undefined);
  for (const n of started) n.endInput();
  await Promise.all(started.map((n) => n.exited));
  for (const ns of spaces) await ns?.delete();
}

export const stats = (n: FixtureDriver): Promise<DatapathStats> => n.call<DatapathStats>('stats');
export const run = (ns: Netns, argv: string[]): Promise<ExecResult> => ns.exec(argv, { check: false });
