// UDP in and out of namespaces for the engine and hostile-input tests: raw datagrams sent from a
// given address (fixtures/udp-tool.mjs, or one GSO super-datagram with fixtures/gso-send.py), and a
// listener that records every datagram it gets.
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { Netns } from '../testbed/netns.js';
import { repoRoot } from '../testbed/tcp.js';

const UDP_TOOL = join(repoRoot(), 'test', 'support', 'fixtures', 'udp-tool.mjs');
const GSO_SEND = join(repoRoot(), 'test', 'support', 'fixtures', 'gso-send.py');

/** Sends each buffer as one UDP datagram from bindIP:bindPort inside `ns`, in order. */
export async function sendDatagrams(ns: Netns, bindIP: string, bindPort: number, dstIP: string, dstPort: number, datagrams: Buffer[]): Promise<void> {
  const argv = [process.execPath, UDP_TOOL, 'send', bindIP, String(bindPort), dstIP, String(dstPort), ...datagrams.map((d) => d.toString('hex'))];
  const r = await ns.exec(argv, { check: false, timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`udp-tool send in ${ns.name} failed: ${r.stderr.trim() || r.stdout.trim()}`);
}

/**
 * Sends the buffers as ONE UDP GSO super-datagram (gso-send.py, needs python3): a receiver that
 * asked for UDP_GRO gets them as one coalesced message. All but the last must be the same length.
 */
export async function sendGsoDatagrams(ns: Netns, bindIP: string, bindPort: number, dstIP: string, dstPort: number, segments: Buffer[]): Promise<void> {
  const argv = ['python3', GSO_SEND, bindIP, String(bindPort), dstIP, String(dstPort), ...segments.map((d) => d.toString('hex'))];
  const r = await ns.exec(argv, { check: false, timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`gso-send.py in ${ns.name} failed: ${r.stderr.trim() || r.stdout.trim()}`);
}

/**
 * Reads a fixture child's stdout as JSON lines: resolves at its `{"listening":...}` line, hands
 * every other line to `onRecord`, and rejects with its stderr if it exits before listening.
 */
export function readJsonLines(child: ChildProcess, what: string, onRecord: (obj: Record<string, unknown>) => void): Promise<void> {
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (c: string) => (stderr += c));
  let buf = '';
  return new Promise<void>((resolve, reject) => {
    child.once('exit', (code, signal) => reject(new Error(`${what} exited (${signal ?? code}): ${stderr.trim()}`)));
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const obj = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>;
        buf = buf.slice(nl + 1);
        if ('listening' in obj) resolve();
        else onRecord(obj);
      }
    });
  });
}

export interface Received {
  from: string;
  port: number;
  payload: string;
}

/** A UDP listener inside a namespace (udp-tool.mjs listen); every datagram lands in `received`. */
export class UdpListener {
  readonly received: Received[] = [];
  private constructor(private readonly child: ChildProcess) {}

  static async start(ns: Netns, ip: string, port: number): Promise<UdpListener> {
    const child = ns.spawn([process.execPath, UDP_TOOL, 'listen', ip, String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
    const listener = new UdpListener(child);
    await readJsonLines(child, `listener in ${ns.name}`, (obj) => listener.received.push(obj as unknown as Received));
    return listener;
  }

  payloads(): string[] {
    return this.received.map((r) => r.payload);
  }

  close(): void {
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
  }
}
