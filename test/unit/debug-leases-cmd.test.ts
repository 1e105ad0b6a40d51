// `felt leases --agent` against a real debug server with a hand-built AgentState (no root):
// table and JSON output over TCP and unix sockets, and a clear one-line error when unreachable.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { pino } from 'pino';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { startDebugServer, type DebugServer } from '../../src/debug/server.js';
import type { LeasesView } from '../../src/debug/view.js';
import { parseFlags } from '../../src/flags.js';
import { runLeasesCommand } from '../../src/leases-cmd.js';
import { leasesSettings } from '../../src/settings.js';
import { HandState } from '../debug/state.js';

const log = pino({ level: 'silent' });
const servers: DebugServer[] = [];
const dir = mkdtempSync(join(tmpdir(), 'felt-leases-cmd-'));
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function sink(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (c: Buffer) => (text += c.toString()));
  return { stream, text: () => text };
}

async function run(argv: string[], timeoutMs?: number): Promise<{ code: number; out: string; err: string }> {
  const out = sink();
  const err = sink();
  const code = await runLeasesCommand(leasesSettings(parseFlags('leases', argv, {}), {}), out.stream, { err: err.stream, timeoutMs });
  return { code, out: out.text(), err: err.text() };
}

describe('felt leases --agent (no root)', () => {
  it('prints the agent table over TCP (http://host:port and bare host:port)', async () => {
    const s = await startDebugServer('127.0.0.1:0', new HandState(), log);
    servers.push(s);
    for (const agent of [`http://${s.address}`, s.address]) {
      const r = await run(['--agent', agent]);
      expect(r.err).toBe('');
      expect(r.code).toBe(0);
      const rows = r.out.split('\n').filter((l) => /^[* ]\s+10\.244\.\d\.0\/24\s/.test(l));
      expect(rows.map((l) => /10\.244\.\d\.0\/24/.exec(l)![0])).toEqual(['10.244.1.0/24', '10.244.2.0/24', '10.244.3.0/24', '10.244.4.0/24']);
      expect(r.out).toContain('TX PKTS');
      expect(r.out).toMatch(/store:\s+etcd connected/);
    }
  });

  it('prints JSON from an agent on a unix socket', async () => {
    const state = new HandState();
    state.isReady = true;
    const s = await startDebugServer(`unix:${join(dir, 'agent.sock')}`, state, log);
    servers.push(s);
    const r = await run(['--agent', s.address, '--json']);
    expect(r.code).toBe(0);
    const v = JSON.parse(r.out) as LeasesView;
    expect(v.ready).toBe(true);
    expect(v.leaseCount).toBe(4);
    expect(v.node?.subnet).toBe('10.244.1.0/24');
  });

  it('fails with one line and exit code 1 when the agent is unreachable', async () => {
    const missing = await run(['--agent', `unix:${join(dir, 'nobody.sock')}`]);
    expect(missing.code).toBe(1);
    expect(missing.out).toBe('');
    expect(missing.err).toMatch(/^felt leases: cannot reach the agent at unix:\/.*nobody\.sock: .*ENOENT.*\n$/);

    // A port nobody listens on (taken then released).
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as { port: number }).port;
    await new Promise((resolve) => probe.close(resolve));
    const refused = await run(['--agent', `http://127.0.0.1:${port}`]);
    expect(refused.code).toBe(1);
    expect(refused.err).toMatch(/^felt leases: cannot reach the agent at 127\.0\.0\.1:\d+: .*ECONNREFUSED.*\n$/);
  });

  it('gives up on an agent that never answers (bounded time)', async () => {
    // Accepts the connection and says nothing.
    const silent = createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const port = (silent.address() as { port: number }).port;
      const r = await run(['--agent', `127.0.0.1:${port}`], 500);
      expect(r.code).toBe(1);
      expect(r.err).toMatch(/^felt leases: .*no answer within 0\.5 s\n$/);
    } finally {
      silent.closeAllConnections();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it('rejects an answer that is not a felt /leases document', async () => {
    const other = createServer((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end('{"hello":"world"}');
    });
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
    try {
      const port = (other.address() as { port: number }).port;
      const r = await run(['--agent', `127.0.0.1:${port}`]);
      expect(r.code).toBe(1);
      expect(r.err).toMatch(/unexpected document/);
      const bad = await run(['--agent', 'ftp://127.0.0.1:21']);
      expect(bad.code).toBe(1);
      expect(bad.err).toMatch(/only http:\/\/ and unix:/);
    } finally {
      await new Promise((resolve) => other.close(resolve));
    }
  });
});
