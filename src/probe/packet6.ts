// ICMPv6 packets of the doctor's IPv6 probes: echo requests (the ICMPv6 message only: the kernel
// writes the IPv6 header and the checksum on a raw ICMPv6 socket), and a parser for what that
// socket receives (the message without its IPv6 header; the source comes from recvmsg): echo
// replies and the ICMPv6 errors that explain a silent peer. Pure; malformed input gives undefined.
import { ipv6FromBytes } from '../net/ip6.js';
import { PROBE_MAGIC } from './packet.js';

const IPV6_HEADER_LEN = 40;
const ECHO_REQUEST = 128;
const ECHO_REPLY = 129;
const PROTO_UDP = 17;
const PROTO_ICMPV6 = 58;
/** IPv6 40 + ICMPv6 8 + the magic: the smallest probe. */
export const MIN_PROBE6_SIZE = IPV6_HEADER_LEN + 8 + PROBE_MAGIC.length;

export interface EchoRequest6 {
  /** Our source address (a local address: the IPv6 tunnel address); undefined: the kernel picks. */
  src?: bigint;
  dst: bigint;
  id: number;
  seq: number;
  /** Total IPv6 packet length in bytes, header included (at least MIN_PROBE6_SIZE). */
  size: number;
}

/** The ICMPv6 echo request message of a `size`-byte IPv6 packet, checksum left 0 for the kernel. */
export function buildEchoRequest6(r: EchoRequest6): Buffer {
  const size = Math.max(MIN_PROBE6_SIZE, Math.min(65535, Math.trunc(r.size)));
  const m = Buffer.alloc(size - IPV6_HEADER_LEN);
  m[0] = ECHO_REQUEST;
  m.writeUInt16BE(r.id & 0xffff, 4);
  m.writeUInt16BE(r.seq & 0xffff, 6);
  PROBE_MAGIC.copy(m, 8);
  for (let i = 8 + PROBE_MAGIC.length; i < m.length; i++) m[i] = i & 0xff;
  return m;
}

/** The packet an ICMPv6 error quotes (no extension headers are walked: our probes and the
 *  tunnel's datagrams carry none). */
export interface QuotedPacket6 {
  /** The quoted IPv6 header's next header. */
  protocol: number;
  src: bigint;
  dst: bigint;
  srcPort?: number;
  dstPort?: number;
  echoId?: number;
  echoSeq?: number;
}

export type ReceivedIcmp6 =
  | { kind: 'echo-reply'; from: bigint; id: number; seq: number; size: number }
  | { kind: 'error'; from: bigint; type: number; code: number; /** MTU of packet-too-big */ mtu: number; quoted: QuotedPacket6 };

/** Parses one ICMPv6 message from the raw socket; `from` is the 16-byte source address. */
export function parseIcmp6(buf: Uint8Array, from: Uint8Array | undefined, length = buf.length): ReceivedIcmp6 | undefined {
  if (!from || from.length !== 16 || length < 8 || length > buf.length) return undefined;
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const src = ipv6FromBytes(from);
  const type = b[0]!;
  const code = b[1]!;
  if (type === ECHO_REPLY) {
    return { kind: 'echo-reply', from: src, id: b.readUInt16BE(4), seq: b.readUInt16BE(6), size: length + IPV6_HEADER_LEN };
  }
  if (type < 1 || type > 4) return undefined;
  const q = 8;
  if (length - q < IPV6_HEADER_LEN || b[q]! >> 4 !== 6) return undefined;
  const quoted: QuotedPacket6 = {
    protocol: b[q + 6]!,
    src: ipv6FromBytes(b.subarray(q + 8, q + 24)),
    dst: ipv6FromBytes(b.subarray(q + 24, q + 40)),
  };
  const u = q + IPV6_HEADER_LEN;
  if (quoted.protocol === PROTO_UDP && length - u >= 4) {
    quoted.srcPort = b.readUInt16BE(u);
    quoted.dstPort = b.readUInt16BE(u + 2);
  } else if (quoted.protocol === PROTO_ICMPV6 && length - u >= 8 && b[u] === ECHO_REQUEST) {
    quoted.echoId = b.readUInt16BE(u + 4);
    quoted.echoSeq = b.readUInt16BE(u + 6);
  }
  return { kind: 'error', from: src, type, code, mtu: type === 2 ? b.readUInt32BE(4) : 0, quoted };
}

/** A UDP datagram seen by the doctor's IPv6 UDP sniff socket (the data starts at the UDP header; the
 *  source comes from recvmsg), and the source of the packet it carries when that looks like felt's
 *  tunnel payload (an IPv4 or IPv6 header). */
export interface SniffedDatagram6 {
  src: bigint;
  srcPort: number;
  dstPort: number;
  inner?: { version: 4; src: number } | { version: 6; src: bigint };
}

/** Parses one datagram from the IPv6 UDP sniff socket; malformed input gives undefined. */
export function parseUdp6(buf: Uint8Array, from: Uint8Array | undefined, length = buf.length): SniffedDatagram6 | undefined {
  if (!from || from.length !== 16 || length < 8 || length > buf.length) return undefined;
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const d: SniffedDatagram6 = { src: ipv6FromBytes(from), srcPort: b.readUInt16BE(0), dstPort: b.readUInt16BE(2) };
  const version = length > 8 ? b[8]! >> 4 : 0;
  if (version === 4 && length - 8 >= 20) d.inner = { version: 4, src: b.readUInt32BE(8 + 12) };
  else if (version === 6 && length - 8 >= IPV6_HEADER_LEN) d.inner = { version: 6, src: ipv6FromBytes(b.subarray(8 + 8, 8 + 24)) };
  return d;
}

/** ICMPv6 error names for people; those that mean a firewall contain "prohibited" or "reject". */
export function icmp6ErrorName(type: number, code: number): string {
  if (type === 2) return 'packet-too-big';
  if (type === 3) return code === 0 ? 'hop-limit-exceeded' : 'reassembly-time-exceeded';
  if (type === 4) return 'parameter-problem';
  const names: Record<number, string> = {
    0: 'no-route', 1: 'admin-prohibited', 2: 'beyond-scope', 3: 'address-unreachable',
    4: 'port-unreachable', 5: 'source-policy-prohibited', 6: 'reject-route',
  };
  return names[code] ?? `unreachable-code-${code}`;
}
