// Test-side handle on a fixture process (test/support/fixtures/engine-node.mjs, test/native/fixtures/*.mjs)
// running inside a namespace:
// sends one JSON command per line, resolves each with the matching JSON reply.
import type { ChildProcess } from 'node:child_process';
import readline from 'node:readline';
import type { Netns } from '../testbed/netns.js';

interface Reply {
  id: number;
  ok: boolean;
  result?: unknown;
  error?: string;
}

export class FixtureDriver {
  private nextId = 1;
  private readonly pending = new Map<number, (r: Reply) => void>();
  private stderr = '';
  readonly exited: Promise<number | null>;

  constructor(readonly child: ChildProcess) {
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      let reply: Reply;
      try {
        reply = JSON.parse(line) as Reply;
      } catch {
        return; // not a reply (stray output)
      }
      this.pending.get(reply.id)?.(reply);
      this.pending.delete(reply.id);
    });
    child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    void this.exited.then((code) => {
      for (const [id, done] of this.pending) done({ id, ok: false, error: `fixture exited (${code}): ${this.stderr}` });
      this.pending.clear();
    });
  }

  static spawn(ns: Netns, script: string, args: string[] = []): FixtureDriver {
    return new FixtureDriver(ns.spawn(['node', script, ...args]));
  }

  /** Sends a command; resolves with its result, rejects with the fixture's error message. */
  async call<T = unknown>(op: string, args: Record<string, unknown> = {}): Promise<T> {
    const reply = await this.send(op, args);
    if (!reply.ok) throw new Error(reply.error);
    return reply.result as T;
  }

  send(op: string, args: Record<string, unknown> = {}): Promise<Reply> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.child.stdin!.write(JSON.stringify({ id, op, ...args }) + '\n');
    });
  }

  /** Closes stdin: a fixture with nothing else keeping it alive exits. */
  endInput(): void {
    this.child.stdin!.end();
  }

  get errorOutput(): string {
    return this.stderr;
  }
}
