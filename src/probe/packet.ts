// Packets of the peer probes: ICMP echo requests built whole (IPv4 header included, so the source
// address and DF are ours to set), and a parser for what the probe socket receives: echo replies
// and the ICMP errors that explain a silent peer. Pure functions; malformed input gives undefined.
import { internetChecksum } from '../datapath/packet.js';

const IPV4_HEADER_LEN = 20;
const ICMP_ECHO_REPLY = 0;
const ICMP_ECHO_REQUEST = 8;
const PROTO_ICMP = 1;
const PROTO_UDP = 17;
const FLAG_DF = 0x4000;
/** Marks our probes' payload, so a capture shows what they are. */
export const PROBE_MAGIC = Buffer.from('felt-probe', 'ascii');
/** IPv4 20 + ICMP 8 + the magic: the smallest probe we send. */
export const MIN_PROBE_SIZE = IPV4_HEADER_LEN + 8 + PROBE_MAGIC.length;

export interface EchoRequest {
  src: number;
  dst: number;
  id: number;
  seq: number;
  /** Total IPv4 length in bytes (at least MIN_PROBE_SIZE). */
  size: number;
  df: boolean;
  ttl?: number;
}

/** An IPv4 + ICMP echo request of exactly `size` bytes. The kernel fills the IP id and checksum. */
export function buildEchoRequest(r: EchoRequest): Buffer {
  const size = Math.max(MIN_PROBE_SIZE, Math.min(65535, Math.trunc(r.size)));
  const p = Buffer.alloc(size);
  p[0] = 0x45;
  p.writeUInt16BE(size, 2);
  p.writeUInt16BE(r.df ? FLAG_DF : 0, 6);
  p[8] = r.ttl ?? 64;
  p[9] = PROTO_ICMP;
  p.writeUInt32BE(r.src >>> 0, 12);
  p.writeUInt32BE(r.dst >>> 0, 16);
  const icmp = IPV4_HEADER_LEN;
  p[icmp] = ICMP_ECHO_REQUEST;
  p.writeUInt16BE(r.id & 0xffff, icmp + 4);
  p.writeUInt16BE(r.seq & 0xffff, icmp + 6);
  PROBE_MAGIC.copy(p, icmp + 8);
  for (let i = icmp + 8 + PROBE_MAGIC.length; i < size; i++) p[i] = i & 0xff;
  p.writeUInt16BE(internetChecksum(p, icmp, size - icmp), icmp + 2);
  return p;
}

/** The header an ICMP error quotes: the packet that caused it. */
export interface QuotedPacket {
  protocol: number;
  src: number;
  dst: number;
  /** UDP quotes: the ports. */
  srcPort?: number;
  dstPort?: number;
  /** ICMP echo quotes: id and sequence number. */
  echoId?: number;
  echoSeq?: number;
}

export type ReceivedIcmp =
  | { kind: 'echo-reply'; from: number; to: number; id: number; seq: number; size: number }
  | { kind: 'error'; from: number; to: number; type: number; code: number; /** next-hop MTU of frag-needed */ mtu: number; quoted: QuotedPacket };

function ipHeader(buf: Uint8Array, off: number, length: number): { hl: number; total: number; proto: number; src: number; dst: number } | undefined {
  if (length - off < IPV4_HEADER_LEN) return undefined;
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b[off]! >> 4 !== 4) return undefined;
  const hl = (b[off]! & 0x0f) * 4;
  if (hl < IPV4_HEADER_LEN || off + hl > length) return undefined;
  return { hl, total: b.readUInt16BE(off + 2), proto: b[off + 9]!, src: b.readUInt32BE(off + 12), dst: b.readUInt32BE(off + 16) };
}

/** Parses a packet from the raw ICMP socket (IPv4 header included). */
export function parseIcmp(buf: Uint8Array, length = buf.length): ReceivedIcmp | undefined {
  const ip = ipHeader(buf, 0, length);
  if (!ip || ip.proto !== PROTO_ICMP) return undefined;
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const o = ip.hl;
  if (length - o < 8) return undefined;
  const type = b[o]!;
  const code = b[o + 1]!;
  if (type === ICMP_ECHO_REPLY) {
    return { kind: 'echo-reply', from: ip.src, to: ip.dst, id: b.readUInt16BE(o + 4), seq: b.readUInt16BE(o + 6), size: Math.min(ip.total, length) };
  }
  if (type !== 3 && type !== 11 && type !== 12) return undefined;
  const q = ipHeader(buf, o + 8, length);
  if (!q) return undefined;
  const quoted: QuotedPacket = { protocol: q.proto, src: q.src, dst: q.dst };
  const qo = o + 8 + q.hl;
  if (q.proto === PROTO_UDP && length - qo >= 4) {
    quoted.srcPort = b.readUInt16BE(qo);
    quoted.dstPort = b.readUInt16BE(qo + 2);
  } else if (q.proto === PROTO_ICMP && length - qo >= 8 && b[qo] === ICMP_ECHO_REQUEST) {
    quoted.echoId = b.readUInt16BE(qo + 4);
    quoted.echoSeq = b.readUInt16BE(qo + 6);
  }
  return { kind: 'error', from: ip.src, to: ip.dst, type, code, mtu: type === 3 && code === 4 ? b.readUInt16BE(o + 6) : 0, quoted };
}

/** A UDP datagram seen by the sniffing socket, with the IPv4 packet it carries (if it is one). */
export interface SniffedDatagram {
  src: number;
  dst: number;
  srcPort: number;
  dstPort: number;
  inner?: { src: number; dst: number; protocol: number };
}

/** Parses a packet from the raw UDP socket (IPv4 header included). */
export function parseUdp(buf: Uint8Array, length = buf.length): SniffedDatagram | undefined {
  const ip = ipHeader(buf, 0, length);
  if (!ip || ip.proto !== PROTO_UDP || length - ip.hl < 8) return undefined;
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const d: SniffedDatagram = { src: ip.src, dst: ip.dst, srcPort: b.readUInt16BE(ip.hl), dstPort: b.readUInt16BE(ip.hl + 2) };
  const inner = ipHeader(buf, ip.hl + 8, length);
  if (inner) d.inner = { src: inner.src, dst: inner.dst, protocol: inner.proto };
  return d;
}

/** ICMP error names for people: "port-unreachable", "frag-needed", ... */
export function icmpErrorName(type: number, code: number): string {
  if (type === 11) return code === 0 ? 'ttl-exceeded' : 'reassembly-time-exceeded';
  if (type === 12) return 'parameter-problem';
  const names: Record<number, string> = {
    0: 'net-unreachable', 1: 'host-unreachable', 2: 'protocol-unreachable', 3: 'port-unreachable',
    4: 'frag-needed', 9: 'net-prohibited', 10: 'host-prohibited', 13: 'admin-prohibited',
  };
  return names[code] ?? `unreachable-code-${code}`;
}
