// Opens the lease store the settings name. Each store is loaded only when chosen, so an etcd node
// never loads the Kubernetes client and the other way round.
import type { Logger } from '../log.js';
import type { StoreSettings } from '../settings.js';
import type { LeaseStore } from './types.js';

export interface OpenOptions {
  /** Deadline of each request to the store (default: the store's own). */
  callTimeoutMs?: number;
}

export async function openLeaseStore(settings: StoreSettings, log: Logger, options: OpenOptions = {}): Promise<LeaseStore> {
  if (settings.kind === 'kube') {
    const { KubeLeaseStore } = await import('./kube/store.js');
    const timing = options.callTimeoutMs ? { ...settings.kube.timing, requestTimeoutMs: options.callTimeoutMs } : settings.kube.timing;
    return new KubeLeaseStore({ ...settings.kube, timing }, log);
  }
  const { EtcdLeaseStore } = await import('./etcd/store.js');
  return new EtcdLeaseStore({ ...settings.etcd, callTimeoutMs: options.callTimeoutMs ?? settings.etcd.callTimeoutMs }, log);
}
