// Shared pieces of the Kubernetes-mode tests: node objects as a cluster would hold them, a silent
// logger, a net-conf.json file, and polling.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import type { Logger } from '../../src/log.js';
import type { JsonObject } from '../testbed/fake-apiserver.js';
import { waitFor } from '../support/wait.js';

export const PREFIX = 'flannel.alpha.coreos.com/';

export function quietLogger(): Logger {
  return pino({ level: 'silent' });
}

/** A node as the controller manager leaves it: podCIDR(s) set, no flannel annotations yet. */
export function bareNode(name: string, podCIDR?: string | string[], extra: JsonObject = {}): JsonObject {
  const spec: JsonObject = {};
  if (Array.isArray(podCIDR)) {
    spec.podCIDRs = podCIDR;
    spec.podCIDR = podCIDR[0]!;
  } else if (podCIDR) {
    spec.podCIDR = podCIDR;
    spec.podCIDRs = [podCIDR];
  }
  return {
    metadata: { name, labels: { 'kubernetes.io/hostname': name }, ...(extra.metadata as JsonObject | undefined) },
    spec,
    status: {
      conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'kubelet is posting ready status' }],
      addresses: [{ type: 'InternalIP', address: '192.168.77.99' }],
    },
  };
}

/** A node some felt/flannel UDP agent has already annotated. */
export function managedNode(name: string, podCIDR: string, publicIP: string): JsonObject {
  const node = bareNode(name, podCIDR);
  (node.metadata as JsonObject).annotations = {
    [`${PREFIX}kube-subnet-manager`]: 'true',
    [`${PREFIX}backend-type`]: '',
    [`${PREFIX}backend-data`]: 'null',
    [`${PREFIX}public-ip`]: publicIP,
  };
  return node;
}

/** A temporary directory with net-conf.json; call cleanup() in afterAll. */
export function netConf(config: unknown = { Network: '10.244.0.0/16', Backend: { Type: 'udp' } }): { path: string; dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'felt-kube-'));
  const path = join(dir, 'net-conf.json');
  writeFileSync(path, JSON.stringify(config));
  return { path, dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Polls quickly: these waits are on a local fake API server. */
export function until<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
  return waitFor(what, check, timeoutMs, 20);
}
