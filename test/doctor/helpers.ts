// Running `felt doctor` in a testbed node and reading its verdicts: shared by the doctor suites.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { agentEntry } from '../testbed/agent.js';
import { repoRoot } from '../testbed/tcp.js';
import type { Testbed, TestbedNode } from '../testbed/testbed.js';
import { formatReport } from '../../src/doctor/report.js';
import type { CheckResult, DoctorReport } from '../../src/doctor/types.js';

export interface DoctorRun {
  code: number | null;
  report: DoctorReport;
  text: string;
}

function artifact(name: string, text: string): void {
  const dir = join(repoRoot(), 'test-artifacts');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, name), text);
}

/** Runs `felt doctor --json` inside the node's namespace against its agent (and etcd). */
export async function doctor(tb: Testbed, node: TestbedNode, save?: string): Promise<DoctorRun> {
  const sock = join(tb.workDir, node.name, 'felt.sock');
  const r = await node.ns.exec([
    process.execPath, agentEntry(), 'doctor', '--json', '--timeout', '2',
    '--agent', `unix:${sock}`,
    '--etcd-endpoints', tb.etcdClientURL, '--etcd-prefix', tb.etcdPrefix,
    '--subnet-file', join(tb.workDir, node.name, 'subnet.env'),
  ], { check: false, timeoutMs: 60_000 });
  let report: DoctorReport;
  try {
    report = JSON.parse(r.stdout) as DoctorReport;
  } catch {
    throw new Error(`felt doctor on ${node.name} printed no JSON (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  }
  const text = formatReport(report);
  if (save) artifact(`doctor-${save}.txt`, `$ felt doctor\n${text}`);
  return { code: r.code, report, text };
}

export function check(run: DoctorRun, id: string): CheckResult {
  const c = run.report.checks.find((x) => x.id === id);
  if (!c) throw new Error(`no check "${id}" in:\n${run.text}`);
  return c;
}

export function peerCheck(run: DoctorRun, node: TestbedNode): CheckResult {
  const c = run.report.checks.find((x) => x.id === 'peer' && x.peer?.publicIP === node.underlayIP);
  if (!c) throw new Error(`the doctor named no problem with peer ${node.name} (${node.underlayIP}):\n${run.text}`);
  return c;
}

/** Exactly these checks fail (the peer checks by the peer's PublicIP); everything else passes. */
export function expectOnlyFailures(run: DoctorRun, ids: string[]): void {
  const failing = run.report.checks.filter((c) => c.verdict === 'fail' && c.id !== 'peers').map((c) => (c.id === 'peer' ? `peer ${c.peer?.publicIP}` : c.id));
  expect(failing.sort(), run.text).toEqual([...ids].sort());
  expect(run.report.checks.filter((c) => c.verdict === 'error' || c.verdict === 'warn'), run.text).toEqual([]);
  expect(run.code, run.text).toBe(1);
}
