// The doctor's ICMPv6 probe packets: echo requests as the kernel expects them on a raw ICMPv6
// socket, and the parser on replies, errors and malformed input (undefined, never a throw).
import { describe, expect, it } from 'vitest';
import { ipv6ToBytes, parseIPv6 } from '../../src/net/ip6.js';
import { buildEchoRequest6, icmp6ErrorName, MIN_PROBE6_SIZE, parseIcmp6, parseUdp6 } from '../../src/probe/packet6.js';

const A = parseIPv6('fc00:0:0:1::');
const B = parseIPv6('fc00:0:0:2::');
const from = (ip: bigint) => Buffer.from(ipv6ToBytes(ip));

/** An ICMPv6 error of `type`/`code` quoting an IPv6 header (next header `nh`) and `rest`. */
function error6(type: number, code: number, word: number, nh: number, src: bigint, dst: bigint, rest: Buffer): Buffer {
  const m = Buffer.alloc(8);
  m[0] = type;
  m[1] = code;
  m.writeUInt32BE(word, 4);
  const ip = Buffer.alloc(40);
  ip[0] = 0x60;
  ip.writeUInt16BE(rest.length, 4);
  ip[6] = nh;
  ip[7] = 64;
  Buffer.from(ipv6ToBytes(src)).copy(ip, 8);
  Buffer.from(ipv6ToBytes(dst)).copy(ip, 24);
  return Buffer.concat([m, ip, rest]);
}

describe('ICMPv6 probe packets', () => {
  it('builds the echo request message of a packet of exactly the asked size, checksum left to the kernel', () => {
    const m = buildEchoRequest6({ dst: B, id: 0x1234, seq: 7, size: 1452 });
    expect(m.length).toBe(1452 - 40);
    expect([m[0], m[1], m.readUInt16BE(2), m.readUInt16BE(4), m.readUInt16BE(6)]).toEqual([128, 0, 0, 0x1234, 7]);
    expect(m.subarray(8, 18).toString('ascii')).toBe('felt-probe');
    expect(buildEchoRequest6({ dst: B, id: 1, seq: 1, size: 3 }).length).toBe(MIN_PROBE6_SIZE - 40);
  });

  it('parses an echo reply with its source from recvmsg', () => {
    const m = Buffer.alloc(64);
    m[0] = 129;
    m.writeUInt16BE(0xbeef, 4);
    m.writeUInt16BE(3, 6);
    expect(parseIcmp6(m, from(B))).toEqual({ kind: 'echo-reply', from: B, id: 0xbeef, seq: 3, size: 104 });
  });

  it('parses port-unreachable about a tunnel datagram (UDP ports) and packet-too-big about a probe (echo id, MTU)', () => {
    const udp = Buffer.from([0x9c, 0x40, 0x20, 0x5d, 0, 8, 0, 0]);
    expect(parseIcmp6(error6(1, 4, 0, 17, A, B, udp), from(B))).toEqual({
      kind: 'error', from: B, type: 1, code: 4, mtu: 0, quoted: { protocol: 17, src: A, dst: B, srcPort: 0x9c40, dstPort: 8285 },
    });
    const echo = buildEchoRequest6({ dst: B, id: 0x4242, seq: 9, size: 1452 }).subarray(0, 16);
    const ptb = parseIcmp6(error6(2, 0, 1280, 58, A, B, echo), from(parseIPv6('fd77::1')));
    expect(ptb).toMatchObject({ kind: 'error', type: 2, mtu: 1280, quoted: { protocol: 58, echoId: 0x4242, echoSeq: 9 } });
    expect(icmp6ErrorName(2, 0)).toBe('packet-too-big');
    expect(icmp6ErrorName(1, 4)).toBe('port-unreachable');
    expect(icmp6ErrorName(1, 1)).toBe('admin-prohibited');
    expect(icmp6ErrorName(1, 99)).toBe('unreachable-code-99');
  });

  it('malformed input gives undefined: short, no source, a quote that is not IPv6 or is cut short, other types', () => {
    const ok = error6(1, 4, 0, 17, A, B, Buffer.alloc(8));
    expect(parseIcmp6(Buffer.alloc(7), from(B))).toBeUndefined();
    expect(parseIcmp6(ok, undefined)).toBeUndefined();
    expect(parseIcmp6(ok, Buffer.alloc(4))).toBeUndefined();
    expect(parseIcmp6(ok.subarray(0, 47), from(B))).toBeUndefined();
    const v4 = Buffer.from(ok);
    v4[8] = 0x45;
    expect(parseIcmp6(v4, from(B))).toBeUndefined();
    const ns = Buffer.from(ok);
    ns[0] = 135; // neighbour solicitation
    expect(parseIcmp6(ns, from(B))).toBeUndefined();
    expect(parseIcmp6(ok, from(B), ok.length + 10)).toBeUndefined();
    // A quote cut inside the UDP header: the error is kept, the ports are not guessed.
    const cut = parseIcmp6(ok.subarray(0, 50), from(B));
    expect(cut?.kind === 'error' && cut.quoted).toEqual({ protocol: 17, src: A, dst: B });
    for (let len = 0; len < ok.length; len++) expect(() => parseIcmp6(ok.subarray(0, len), from(B))).not.toThrow();
  });
});

describe('parseUdp6 (the doctor\'s IPv6 NAT sniff)', () => {
  const udp = (inner: Buffer) => Buffer.concat([Buffer.from([0x20, 0x5d, 0x20, 0x5d, 0, 0, 0, 0]), inner]);
  it('reads the ports and the inner packet\'s source, IPv4 or IPv6', () => {
    const v4 = Buffer.alloc(20);
    v4[0] = 0x45;
    v4.writeUInt32BE(0x0af40302, 12);
    expect(parseUdp6(udp(v4), from(B))).toEqual({ src: B, srcPort: 8285, dstPort: 8285, inner: { version: 4, src: 0x0af40302 } });
    const v6 = Buffer.alloc(40);
    v6[0] = 0x60;
    Buffer.from(ipv6ToBytes(A)).copy(v6, 8);
    expect(parseUdp6(udp(v6), from(B))?.inner).toEqual({ version: 6, src: A });
  });
  it('malformed: short, truncated inner headers, no source -> undefined or no inner, never a throw', () => {
    expect(parseUdp6(Buffer.alloc(7), from(B))).toBeUndefined();
    expect(parseUdp6(udp(Buffer.alloc(0)), undefined)).toBeUndefined();
    expect(parseUdp6(udp(Buffer.from([0x60, 0, 0])), from(B))?.inner).toBeUndefined();
    expect(parseUdp6(udp(Buffer.from([0x45, 0, 0])), from(B))?.inner).toBeUndefined();
    expect(parseUdp6(udp(Buffer.alloc(40, 0x77)), from(B))?.inner).toBeUndefined();
  });
});
