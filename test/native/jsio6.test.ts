// The js engine's IPv6 underlay I/O in the addon (udpOpen6, udpStartReader on an IPv6 socket,
// udpSendBatch6) with real datagrams over the loopback address ::1.
import { afterEach, describe, expect, test } from 'vitest';
import { loadAddon, type UdpReader } from '../../src/datapath/addon.js';
import { ipv6ToBytes, parseIPv6 } from '../../src/net/ip6.js';
import { waitFor } from '../support/wait.js';

const addon = loadAddon();
const LOOP6 = ipv6ToBytes(parseIPv6('::1'));

interface Rec {
  src: Buffer;
  flags: number;
  data: Buffer;
}

function parse6(batch: Buffer, count: number): Rec[] {
  const out: Rec[] = [];
  let off = 0;
  for (let i = 0; i < count; i++) {
    const len = batch.readUInt16BE(off + 16);
    out.push({ src: batch.subarray(off, off + 16), flags: batch[off + 18], data: batch.subarray(off + 20, off + 20 + len) });
    off += 20 + len;
  }
  expect(off).toBe(batch.length);
  return out;
}

describe('addon I/O on an IPv6 underlay socket (loopback ::1)', () => {
  const fds: number[] = [];
  const readers: UdpReader[] = [];
  afterEach(() => {
    for (const r of readers.splice(0)) r.stop();
    for (const fd of fds.splice(0)) addon.udpClose(fd);
  });

  function open(): { fd: number; port: number } {
    for (let port = 40000 + Math.floor(Math.random() * 20000); ; port++) {
      try {
        const s = addon.udpOpen6(LOOP6, port);
        fds.push(s.fd);
        return { fd: s.fd, port };
      } catch (e) {
        if (!String(e).includes('in use')) throw e;
      }
    }
  }

  test('udpOpen6 refuses an address that is not 16 bytes, and names the address when bind fails', () => {
    expect(() => addon.udpOpen6(new Uint8Array(4), 1)).toThrow(/16 bytes/);
    const a = open();
    expect(() => addon.udpOpen6(LOOP6, a.port)).toThrow(/bind \[::1\]:\d+: .*in use/i);
  });

  test('udpSendBatch6 datagrams arrive as IPv6 records (GSO trains split again), an index outside addrs is refused', async () => {
    const rx = open();
    const tx = open();
    const got: Rec[] = [];
    readers.push(addon.udpStartReader(rx.fd, (b, n) => got.push(...parse6(b, n))));
    // Five datagrams to index 0 (::1): four of 1000 bytes and a shorter one, a GSO train when available;
    // one to index 1, which addrs does not have.
    const sizes = [1000, 1000, 1000, 1000, 300, 50];
    const buf = Buffer.alloc(sizes.reduce((a, b) => a + b));
    const desc = new Uint32Array(sizes.length * 3);
    let off = 0;
    sizes.forEach((len, i) => {
      buf.fill(i + 1, off, off + len);
      desc.set([off, len, i === 5 ? 1 : 0], 3 * i);
      off += len;
    });
    const ok = new Uint8Array(sizes.length);
    const rc = addon.udpSendBatch6(tx.fd, rx.port, buf, desc, sizes.length, ok, true, LOOP6);
    expect(rc).toBe(0);
    expect([...ok]).toEqual([1, 1, 1, 1, 1, 0]);
    await waitFor('five records', () => got.length >= 5);
    expect(got.map((r) => r.data.length)).toEqual([1000, 1000, 1000, 1000, 300]);
    got.forEach((r, i) => {
      expect(Buffer.compare(r.src, Buffer.from(LOOP6))).toBe(0);
      expect(r.flags).toBe(0);
      expect(r.data.every((b) => b === i + 1)).toBe(true);
    });
    expect(addon.jsioStats().udpGsoSends).toBeGreaterThan(0);
  });

  test('udpSendBatch6 rejects desc/ok shorter than count', () => {
    const tx = open();
    expect(() => addon.udpSendBatch6(tx.fd, 1, Buffer.alloc(4), new Uint32Array(3), 2, new Uint8Array(2), false, LOOP6)).toThrow(
      /udpSendBatch6: desc or ok is shorter/,
    );
  });
});
