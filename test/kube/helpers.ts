// Shared pieces of the Kubernetes-mode tests: node objects as a cluster would hold them, a silent
// logger, a net-conf.json file, polling, and the masquerade traffic check.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { expect } from 'vitest';
import { KubeLeaseStore, type KubeLeaseStoreOptions } from '../../src/lease/kube/store.js';
import type { Logger } from '../../src/log.js';
import type { FakeApiServer, JsonObject } from '../testbed/fake-apiserver.js';
import type { Netns } from '../testbed/netns.js';
import { sendOneDatagram, sourceReceiver, type UdpFamily } from '../support/udp-source.js';
import { waitFor } from '../support/wait.js';

export const PREFIX = 'flannel.alpha.coreos.com/';

export function quietLogger(): Logger {
  return pino({ level: 'silent' });
}

/** A node as the controller manager leaves it: podCIDR(s) set, no flannel annotations yet. */
/** Short timeouts and retries, so the store's waits and failures show within a test. */
export const FAST_TIMING = { acquireTimeoutMs: 600, retryIntervalMs: 50, patchTimeoutMs: 600, backoffMinMs: 20, backoffMaxMs: 100, resyncMs: 0 };

/**
 * A store for node n1 against `api` with the net-conf.json at `netConfigPath`, recorded in `stores`
 * so the suite's afterEach closes it.
 */
export function kubeStore(api: FakeApiServer, netConfigPath: string, stores: KubeLeaseStore[], extra: Partial<KubeLeaseStoreOptions> = {}): KubeLeaseStore {
  const s = new KubeLeaseStore(
    { apiUrl: api.url, annotationPrefix: 'flannel.alpha.coreos.com', netConfigPath, setNodeNetworkUnavailable: false, env: { NODE_NAME: 'n1' }, timing: FAST_TIMING, ...extra },
    quietLogger(),
  );
  stores.push(s);
  return s;
}

/** A node's annotations as the fake API server holds them. */
export function nodeAnnotations(api: FakeApiServer, name: string): Record<string, string> {
  return ((api.getNode(name)!.metadata as JsonObject).annotations ?? {}) as Record<string, string>;
}

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

export interface MasqScene {
  family: UdpFamily;
  pod: Netns;
  outside: Netns;
  remote: Netns;
  podIP: string;
  /** The node's address on the outside link: what masqueraded traffic carries. */
  nodeIP: string;
  outsideIP: string;
  /** A pod on another node (inside the overlay network). */
  remoteIP: string;
}

/** pod -> outside leaves with the node address only while `masq` is set up; pod -> pod keeps its source throughout. */
export async function expectMasqTraffic(masq: { setup(): Promise<void>; teardown(): Promise<void> }, s: MasqScene): Promise<void> {
  const out = await sourceReceiver(s.outside, s.family, s.outsideIP, 7777);
  const rem = await sourceReceiver(s.remote, s.family, s.remoteIP, 7777).catch((e: unknown) => {
    out.stop();
    throw e;
  });
  const send = (to: string): Promise<void> => sendOneDatagram(s.pod, s.family, to, 7777);
  try {
    await send(s.outsideIP);
    expect(await out.next()).toBe(s.podIP); // no rules yet: the pod address leaks out

    await masq.setup();
    await send(s.outsideIP);
    expect(await out.next()).toBe(s.nodeIP); // masqueraded to the node's address
    await send(s.remoteIP);
    expect(await rem.next()).toBe(s.podIP); // inside the overlay: untouched

    await masq.teardown();
    await send(s.outsideIP);
    expect(await out.next()).toBe(s.podIP);
  } finally {
    out.stop();
    rem.stop();
  }
}
