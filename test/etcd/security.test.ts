// EtcdLeaseStore with TLS client certificates and with basic auth: needs the `etcd`, `etcdctl`
// and `openssl` binaries.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { EtcdLeaseStore } from '../../src/lease/etcd/store.js';
import { startEtcd, type EtcdServer } from '../testbed/etcd.js';
import { captureLog } from './helpers.js';

const PREFIX = '/coreos.com/network';
const CONFIG = JSON.stringify({ Network: '10.244.0.0/16', Backend: { Type: 'udp' } });

let dir: string;
const servers: EtcdServer[] = [];
const stores: EtcdLeaseStore[] = [];

function openssl(args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
}

/** A throw-away CA, a server certificate for 127.0.0.1 and a client certificate. */
function makeCertificates(): void {
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=felt-test-ca', '-keyout', 'ca.key', '-out', 'ca.crt']);
  writeFileSync(join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n');
  writeFileSync(join(dir, 'client.ext'), 'extendedKeyUsage=clientAuth\n');
  for (const name of ['server', 'client']) {
    openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=felt-test-${name}`, '-keyout', `${name}.key`, '-out', `${name}.csr`]);
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-extfile', `${name}.ext`, '-out', `${name}.crt`]);
  }
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'felt-etcd-tls-'));
  makeCertificates();
});

afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
  for (const s of servers.splice(0)) await s.stop();
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('EtcdLeaseStore with TLS (needs the etcd and openssl binaries)', () => {
  it('connects with --etcd-cafile/--etcd-certfile/--etcd-keyfile and acquires a lease', async () => {
    const server = await startEtcd({
      tls: { certFile: join(dir, 'server.crt'), keyFile: join(dir, 'server.key'), caFile: join(dir, 'ca.crt') },
    });
    servers.push(server);
    expect(server.clientURL).toMatch(/^https:\/\//);
    const plain = new Etcd3({ hosts: server.unixURL });
    await plain.put(`${PREFIX}/config`).value(CONFIG);
    plain.close();

    const { log } = captureLog();
    const store = new EtcdLeaseStore(
      {
        endpoints: [server.clientURL],
        prefix: PREFIX,
        caFile: join(dir, 'ca.crt'),
        certFile: join(dir, 'client.crt'),
        keyFile: join(dir, 'client.key'),
        callTimeoutMs: 5000,
      },
      log,
    );
    stores.push(store);
    const lease = await store.acquire('192.168.77.2');
    expect(lease.publicIP).toBe('192.168.77.2');

    // Without a client certificate etcd refuses us: an error, not a hang.
    const anonymous = new EtcdLeaseStore(
      { endpoints: [server.clientURL], prefix: PREFIX, caFile: join(dir, 'ca.crt'), callTimeoutMs: 3000 },
      captureLog().log,
    );
    stores.push(anonymous);
    await expect(anonymous.getNetworkConfig()).rejects.toThrow(/^etcd: read network config failed: /);
  });

  it('reports unreadable certificate files and a key without a certificate clearly', () => {
    const { log } = captureLog();
    const base = { endpoints: ['https://127.0.0.1:1'], prefix: PREFIX };
    expect(() => new EtcdLeaseStore({ ...base, caFile: join(dir, 'missing.crt') }, log)).toThrow(
      `etcd: cannot read CA file ${join(dir, 'missing.crt')}`,
    );
    expect(() => new EtcdLeaseStore({ ...base, keyFile: join(dir, 'client.key') }, log)).toThrow(
      /--etcd-keyfile and --etcd-certfile must be given together/,
    );
  });
});

describe('EtcdLeaseStore with basic auth (needs the etcd and etcdctl binaries)', () => {
  it('authenticates with --etcd-username/--etcd-password; without them it gets an error', async () => {
    const server = await startEtcd();
    servers.push(server);
    const ctl = (...args: string[]) => execFileSync('etcdctl', ['--endpoints', server.clientURL, ...args], { stdio: 'pipe', env: { ...process.env, ETCDCTL_API: '3' } });
    ctl('put', `${PREFIX}/config`, CONFIG);
    ctl('user', 'add', 'root:felt-test-pw');
    ctl('user', 'grant-role', 'root', 'root');
    ctl('auth', 'enable');

    const store = new EtcdLeaseStore(
      { endpoints: [server.clientURL], prefix: PREFIX, username: 'root', password: 'felt-test-pw' },
      captureLog().log,
    );
    stores.push(store);
    expect((await store.acquire('192.168.77.3')).publicIP).toBe('192.168.77.3');

    const anonymous = new EtcdLeaseStore({ endpoints: [server.clientURL], prefix: PREFIX }, captureLog().log);
    stores.push(anonymous);
    await expect(anonymous.getNetworkConfig()).rejects.toThrow(/^etcd: read network config failed: .*(user name is empty|permission denied)/i);

    const wrong = new EtcdLeaseStore(
      { endpoints: [server.clientURL], prefix: PREFIX, username: 'root', password: 'nope' },
      captureLog().log,
    );
    stores.push(wrong);
    await expect(wrong.getNetworkConfig()).rejects.toThrow(/authentication failed/i);
  });
});
