import { describe, expect, it } from 'vitest';
import { internetChecksum } from '../../src/datapath/packet.js';
import { parseIPv4 } from '../../src/net/cidr.js';
import { buildEchoRequest, icmpErrorName, MIN_PROBE_SIZE, parseIcmp, parseUdp } from '../../src/probe/packet.js';

const A = parseIPv4('10.244.1.0');
const B = parseIPv4('10.244.2.0');

function ipHeader(proto: number, src: number, dst: number, payloadLen: number): Buffer {
  const h = Buffer.alloc(20);
  h[0] = 0x45;
  h.writeUInt16BE(20 + payloadLen, 2);
  h[8] = 64;
  h[9] = proto;
  h.writeUInt32BE(src >>> 0, 12);
  h.writeUInt32BE(dst >>> 0, 16);
  return h;
}

describe('probe packets', () => {
  it('builds an echo request of exactly the asked size, DF as asked, with a valid ICMP checksum', () => {
    const p = buildEchoRequest({ src: A, dst: B, id: 0x1234, seq: 7, size: 1472, df: true });
    expect(p.length).toBe(1472);
    expect(p.readUInt16BE(2)).toBe(1472);
    expect(p.readUInt16BE(6) & 0x4000).toBe(0x4000);
    expect(p[9]).toBe(1);
    expect(p.readUInt32BE(12)).toBe(A);
    expect(p.readUInt32BE(16)).toBe(B);
    expect(p[20]).toBe(8);
    expect(internetChecksum(p, 20, p.length - 20)).toBe(0);
    expect(buildEchoRequest({ src: A, dst: B, id: 1, seq: 1, size: 5, df: false }).length).toBe(MIN_PROBE_SIZE);
  });

  it('parses an echo reply', () => {
    const icmp = Buffer.alloc(16);
    icmp[0] = 0;
    icmp.writeUInt16BE(0x1234, 4);
    icmp.writeUInt16BE(9, 6);
    const pkt = Buffer.concat([ipHeader(1, B, A, icmp.length), icmp]);
    expect(parseIcmp(pkt)).toEqual({ kind: 'echo-reply', from: B, to: A, id: 0x1234, seq: 9, size: pkt.length });
  });

  it('parses a port-unreachable quoting a tunnel datagram, and a frag-needed quoting a probe', () => {
    const udp = Buffer.alloc(8);
    udp.writeUInt16BE(40000, 0);
    udp.writeUInt16BE(8285, 2);
    const quoted = Buffer.concat([ipHeader(17, parseIPv4('192.168.77.11'), parseIPv4('192.168.77.13'), 100), udp]);
    const err = Buffer.concat([Buffer.from([3, 3, 0, 0, 0, 0, 0, 0]), quoted]);
    const pkt = Buffer.concat([ipHeader(1, parseIPv4('192.168.77.13'), parseIPv4('192.168.77.11'), err.length), err]);
    const r = parseIcmp(pkt);
    expect(r).toMatchObject({ kind: 'error', type: 3, code: 3, quoted: { protocol: 17, dst: parseIPv4('192.168.77.13'), dstPort: 8285 } });
    expect(icmpErrorName(3, 3)).toBe('port-unreachable');

    const probe = buildEchoRequest({ src: A, dst: B, id: 0x42, seq: 5, size: 100, df: true }).subarray(0, 28);
    const frag = Buffer.concat([Buffer.from([3, 4, 0, 0, 0, 0, 0x05, 0x78]), probe]);
    const r2 = parseIcmp(Buffer.concat([ipHeader(1, A, A, frag.length), frag]));
    expect(r2).toMatchObject({ kind: 'error', type: 3, code: 4, mtu: 1400, quoted: { protocol: 1, echoId: 0x42, echoSeq: 5 } });
  });

  it('parses a sniffed tunnel datagram with its inner packet', () => {
    const inner = buildEchoRequest({ src: B, dst: A, id: 1, seq: 1, size: 60, df: true });
    const udp = Buffer.alloc(8);
    udp.writeUInt16BE(8285, 0);
    udp.writeUInt16BE(8285, 2);
    const pkt = Buffer.concat([ipHeader(17, parseIPv4('203.0.113.9'), parseIPv4('192.168.77.11'), 8 + inner.length), udp, inner]);
    expect(parseUdp(pkt)).toEqual({ src: parseIPv4('203.0.113.9'), dst: parseIPv4('192.168.77.11'), srcPort: 8285, dstPort: 8285, inner: { src: B, dst: A, protocol: 1 } });
  });

  it('never throws on garbage: short, wrong version, header longer than the packet, unknown ICMP types', () => {
    const samples: Buffer[] = [Buffer.alloc(0), Buffer.alloc(19), Buffer.from([0x65, ...new Array(40).fill(0)]), Buffer.from([0x4f, ...new Array(30).fill(0)])];
    const echoReq = buildEchoRequest({ src: A, dst: B, id: 1, seq: 1, size: 60, df: false });
    samples.push(echoReq); // a request, not a reply: ignored
    for (let i = 0; i < 2000; i++) samples.push(Buffer.from(Array.from({ length: Math.floor(Math.random() * 80) }, () => Math.floor(Math.random() * 256))));
    for (const s of samples) {
      expect(() => parseIcmp(s)).not.toThrow();
      expect(() => parseUdp(s)).not.toThrow();
    }
    expect(parseIcmp(echoReq)).toBeUndefined();
  });
});
