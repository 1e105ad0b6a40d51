// Helpers for the engine-level tests: namespaces, commands inside them, and the engine fixture
// process (fixtures/engine-node.mjs) spoken to over stdin/stdout JSON lines.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const fixturePath = path.join(repoRoot, 'test/datapath/fixtures/engine-node.mjs');

export function runPrefix(): string {
  return `felt-${randomBytes(3).toString('hex')}`;
}

export interface CmdResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion (no shell); never throws on a non-zero exit. */
export function cmd(file: string, args: string[], timeoutMs = 60_000): CmdResult {
  const r = spawnSync(file, args, { encoding: 'utf8', timeout: timeoutMs });
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? r.error?.message ?? '' };
}

/** Runs a command and throws with its output when it fails. */
export function must(file: string, args: string[]): string {
  const r = cmd(file, args);
  if (r.code !== 0) throw new Error(`${file} ${args.join(' ')} failed (${r.code}): ${r.stderr || r.stdout}`);
  return r.stdout;
}

export function inNs(ns: string, file: string, args: string[], timeoutMs?: number): CmdResult {
  return cmd('ip', ['netns', 'exec', ns, file, ...args], timeoutMs);
}

/** Runs a command inside a namespace without blocking the event loop (fixtures answer meanwhile). */
export function inNsAsync(ns: string, file: string, args: string[]): Promise<CmdResult> {
  return new Promise((resolve) => {
    const child = spawn('ip', ['netns', 'exec', ns, file, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** Two namespaces joined by a veth pair: A 192.168.77.2/24, B 192.168.77.3/24 (+ extras on B). */
export class TwoNodes {
  readonly a: string;
  readonly b: string;

  constructor(prefix: string) {
    this.a = `${prefix}-a`;
    this.b = `${prefix}-b`;
  }

  create(extraAddressesOnB: string[] = []): void {
    must('ip', ['netns', 'add', this.a]);
    must('ip', ['netns', 'add', this.b]);
    must('ip', ['-n', this.a, 'link', 'add', 'veth0', 'type', 'veth', 'peer', 'name', 'veth0', 'netns', this.b]);
    for (const [ns, addr] of [
      [this.a, '192.168.77.2/24'],
      [this.b, '192.168.77.3/24'],
    ] as const) {
      must('ip', ['-n', ns, 'addr', 'add', addr, 'dev', 'veth0']);
      must('ip', ['-n', ns, 'link', 'set', 'veth0', 'up']);
      must('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    }
    for (const addr of extraAddressesOnB) must('ip', ['-n', this.b, 'addr', 'add', addr, 'dev', 'veth0']);
    // Strict reverse-path filtering, as many hosts run: decapsulated and ICMP packets must pass it.
    for (const ns of [this.a, this.b]) must('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.conf.all.rp_filter=1']);
  }

  destroy(): void {
    for (const ns of [this.a, this.b]) cmd('ip', ['netns', 'del', ns]);
  }
}

export interface EngineNodeConfig {
  tunName: string;
  mtu: number;
  network: string;
  localSubnet: string;
  bindIP: string;
  port: number;
  /** Native engine packet threads (the engine's default when absent). */
  threads?: 1 | 2;
}

type Json = Record<string, any>;

/** The fixture process: one engine in one namespace. */
export class EngineNode {
  private readonly child: ChildProcess;
  private readonly lines: Json[] = [];
  private waiters: { pred: (m: Json) => boolean; resolve: (m: Json) => void }[] = [];
  private exited: Promise<number | null>;
  stderr = '';

  constructor(ns: string, engine: string, config: EngineNodeConfig) {
    this.child = spawn('ip', ['netns', 'exec', ns, process.execPath, fixturePath, engine, JSON.stringify(config)], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      let msg: Json;
      try {
        msg = JSON.parse(line) as Json;
      } catch {
        msg = { text: line };
      }
      const i = this.waiters.findIndex((w) => w.pred(msg));
      if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve(msg);
      else this.lines.push(msg);
    });
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)));
  }

  /** The next message matching `pred` (buffered or future); rejects if the process exits first. */
  next(pred: (m: Json) => boolean, what: string): Promise<Json> {
    const i = this.lines.findIndex(pred);
    if (i >= 0) return Promise.resolve(this.lines.splice(i, 1)[0]!);
    return new Promise((resolve, reject) => {
      this.waiters.push({ pred, resolve });
      void this.exited.then((code) =>
        reject(new Error(`engine fixture exited (${code}) while waiting for ${what}; stderr: ${this.stderr}`)),
      );
    });
  }

  /** Resolves on {"ready":true}; rejects with the fixture's error message otherwise. */
  async ready(): Promise<void> {
    const m = await this.next((m) => m.ready === true || m.error !== undefined, 'ready');
    if (m.error !== undefined) throw new Error(m.error as string);
  }

  /** Waits for the start outcome: the error text, or undefined when it started. */
  async startError(): Promise<string | undefined> {
    const m = await this.next((m) => m.ready === true || m.error !== undefined, 'start outcome');
    return m.error as string | undefined;
  }

  private send(line: string): void {
    this.child.stdin!.write(`${line}\n`);
  }

  async setRoutes(routes: { subnet: string; publicIP: string }[]): Promise<void> {
    this.send(JSON.stringify({ routes }));
    await this.next((m) => m.routes !== undefined || m.error !== undefined, 'routes ack');
  }

  async stats(): Promise<Json> {
    this.send('stats');
    const m = await this.next((m) => m.stats !== undefined, 'stats');
    return m.stats as Json;
  }

  /** Asks the fixture to stop its engine; resolves with its exit code. */
  async stop(): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.send('stop');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 20_000);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }

  waitExit(): Promise<number | null> {
    return this.exited;
  }
}

/** An IPv4 + UDP packet (UDP checksum 0 = none, valid for IPv4) with a correct header checksum. */
export function udpPacket(src: string, dst: string, dstPort: number, payload: string, ttl = 64): Buffer {
  const data = Buffer.from(payload);
  const buf = Buffer.alloc(28 + data.length);
  buf[0] = 0x45;
  buf.writeUInt16BE(buf.length, 2);
  buf[8] = ttl;
  buf[9] = 17;
  buf.set(src.split('.').map(Number), 12);
  buf.set(dst.split('.').map(Number), 16);
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += buf.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  buf.writeUInt16BE(~sum & 0xffff, 10);
  buf.writeUInt16BE(40000, 20);
  buf.writeUInt16BE(dstPort, 22);
  buf.writeUInt16BE(8 + data.length, 24);
  data.copy(buf, 28);
  return buf;
}

/** Sends one raw datagram from `fromIP` (ephemeral port) inside `ns`. */
export async function sendDatagram(ns: string, fromIP: string, to: string, port: number, payload: Buffer): Promise<void> {
  const script = `
    const s = require('node:dgram').createSocket('udp4');
    s.bind({ address: process.argv[1], port: 0 }, () =>
      s.send(Buffer.from(process.argv[4], 'hex'), Number(process.argv[3]), process.argv[2], (err) => {
        if (err) { console.error(err.message); process.exitCode = 1; }
        s.close();
      }));`;
  const r = await inNsAsync(ns, process.execPath, ['-e', script, fromIP, to, String(port), payload.toString('hex')]);
  if (r.code !== 0) throw new Error(`sending from ${fromIP} in ${ns} failed: ${r.stderr}`);
}

/** A UDP listener inside a namespace that reports every datagram's payload. */
export class UdpListener {
  private readonly child: ChildProcess;
  readonly received: string[] = [];
  private readonly ready: Promise<void>;

  constructor(ns: string, port: number) {
    const script = `
      const s = require('node:dgram').createSocket('udp4');
      s.on('message', (m) => process.stdout.write(JSON.stringify(m.toString()) + '\\n'));
      s.bind(${port}, () => process.stdout.write('"@listening"\\n'));
      process.stdin.on('close', () => process.exit(0));
      process.stdin.resume();`;
    this.child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.ready = new Promise((resolve) => {
      createInterface({ input: this.child.stdout! }).on('line', (line) => {
        const text = JSON.parse(line) as string;
        if (text === '@listening') resolve();
        else this.received.push(text);
      });
    });
  }

  listening(): Promise<void> {
    return this.ready;
  }

  close(): void {
    this.child.kill('SIGKILL');
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `check` until it returns true (for counters that move asynchronously); false on timeout. */
export async function eventually(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
}
