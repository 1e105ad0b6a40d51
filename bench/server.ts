// A measurement server (iperf3, sockperf) run inside a testbed namespace: started, waited for until
// it listens on its TCP port, and killed at the end.
import type { ChildProcess } from 'node:child_process';
import type { Netns } from '../test/testbed/netns.js';
import { sleep } from '../test/testbed/netns.js';

export interface BenchServer {
  stop(): Promise<void>;
}

/** Spawns `argv` in `ns` and resolves once something listens on TCP `port` there (10 s at most). */
export async function startServer(ns: Netns, argv: string[], port: number): Promise<BenchServer> {
  const what = argv[0];
  const child: ChildProcess = ns.spawn(argv, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  let exited = false;
  child.once('exit', () => (exited = true));
  const stop = async (): Promise<void> => {
    if (exited) return;
    const gone = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGKILL');
    await gone;
  };
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (exited) throw new Error(`${what} server in ${ns.name} exited at once: ${stderr.trim()}`);
    const out = await ns.exec(['ss', '-Htln', `sport = :${port}`], { check: false });
    if (out.stdout.includes(`:${port}`)) return { stop };
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`${what} server in ${ns.name} is not listening on port ${port} after 10 s`);
    }
    await sleep(50);
  }
}
