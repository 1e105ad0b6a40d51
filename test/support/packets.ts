// IPv4 packets for the engine tests: headers with valid checksums, UDP and ICMP echo payloads.
import { internetChecksum } from '../../src/datapath/packet.js';

const inetChecksum = (data: Buffer): number => internetChecksum(data, 0, data.length);

function ipBytes(dotted: string): number[] {
  return dotted.split('.').map(Number);
}

/** An IPv4 header (20 bytes, checksum filled) followed by `payload`. */
export function ipv4(src: string, dst: string, proto: number, payload: Buffer, ttl = 64): Buffer {
  const h = Buffer.alloc(20);
  h[0] = 0x45;
  h.writeUInt16BE(20 + payload.length, 2);
  h.writeUInt16BE(0x4000, 6); // DF
  h[8] = ttl;
  h[9] = proto;
  Buffer.from(ipBytes(src)).copy(h, 12);
  Buffer.from(ipBytes(dst)).copy(h, 16);
  h.writeUInt16BE(inetChecksum(h), 10);
  return Buffer.concat([h, payload]);
}

/** ICMP echo request (type 8) with id/seq and payload, checksum filled. */
export function icmpEcho(id: number, seq: number, data: Buffer): Buffer {
  const m = Buffer.alloc(8 + data.length);
  m[0] = 8;
  m.writeUInt16BE(id, 4);
  m.writeUInt16BE(seq, 6);
  data.copy(m, 8);
  m.writeUInt16BE(inetChecksum(m), 2);
  return m;
}

/** A UDP header (source port 40000, checksum 0) and `payload`. */
export function udpDatagram(dstPort: number, payload: string): Buffer {
  const data = Buffer.from(payload);
  const udp = Buffer.alloc(8 + data.length);
  udp.writeUInt16BE(40000, 0);
  udp.writeUInt16BE(dstPort, 2);
  udp.writeUInt16BE(udp.length, 4);
  data.copy(udp, 8);
  return udp;
}

/** IPv4 + UDP (source port 40000, UDP checksum 0 = none, valid for IPv4) carrying `payload`. */
export function udpPacket(src: string, dst: string, dstPort: number, payload: string, ttl = 64): Buffer {
  return ipv4(src, dst, 17, udpDatagram(dstPort, payload), ttl);
}
