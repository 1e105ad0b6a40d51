// The fake Kubernetes API server (test/testbed/fake-apiserver.ts) run inside a testbed's hub
// namespace, and Node objects for testbed nodes as a cluster would hold them.
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { FakeApiControl, type JsonObject } from '../testbed/fake-apiserver.js';
import { repoRoot } from '../testbed/tcp.js';
import { HUB_IP, type Testbed, type TestbedNode } from '../testbed/testbed.js';

export const FAKE_API_ENTRY = join(repoRoot(), 'dist', 'test', 'testbed', 'fake-apiserver.js');

/** Node i's podCIDR, as the controller manager would assign it. */
export const podCIDR = (n: TestbedNode): string => `10.244.${n.index}.0/24`;

export function nodeObject(n: TestbedNode): JsonObject {
  return {
    metadata: { name: n.name, labels: { 'kubernetes.io/hostname': n.name, 'kubernetes.io/os': 'linux' } },
    spec: { podCIDR: podCIDR(n), podCIDRs: [podCIDR(n)] },
    status: {
      conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'kubelet is posting ready status' }],
      addresses: [{ type: 'InternalIP', address: n.underlayIP }, { type: 'Hostname', address: n.name }],
    },
  };
}

/**
 * Starts the fake API server inside the hub namespace on `port` (extra flags such as --token T);
 * resolves once it listens.
 */
export async function startFakeApi(tb: Testbed, port = 6443, extraArgs: string[] = []): Promise<{ ctl: FakeApiControl; url: string; child: ChildProcess }> {
  const socket = join(tb.workDir, `kube-api-${port}.sock`);
  const argv = [process.execPath, FAKE_API_ENTRY, '--listen', `${HUB_IP}:${port}`, '--control', `unix:${socket}`, '--bookmark-interval-ms', '2000', ...extraArgs];
  const child = tb.hub.spawn(argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  tb.onDestroy(() => {
    child.kill('SIGKILL');
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    let err = '';
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const nl = out.indexOf('\n');
      if (nl >= 0) resolve((JSON.parse(out.slice(0, nl)) as { listening: string }).listening);
    });
    child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
    child.once('exit', (code) => reject(new Error(`fake-apiserver exited (${code}): ${err}`)));
  });
  return { ctl: new FakeApiControl(socket), url, child };
}

/** A UDP receiver in `ns` that reports each datagram's source address. */
