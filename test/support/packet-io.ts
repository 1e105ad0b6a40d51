// One packet at a time into a JsForwarder, through the same batch entry points and BatchIO the js
// engine uses in production: each packet becomes a one-record reader batch, and what leaves is
// recorded (copied: the forwarder hands out slices of its batch buffer).
import type { BatchIO, JsForwarder } from '../../src/datapath/js.js';
import { formatIPv4, parseIPv4 } from '../../src/net/cidr.js';
import { formatIPv6, ipv6FromBytes, ipv6ToBytes, parseIPv6 } from '../../src/net/ip6.js';

export class RecordingIO implements BatchIO {
  readonly sent: { packet: Buffer; address: string }[] = [];
  readonly tun: Buffer[] = [];
  /** The next sends (or TUN writes) report failure; a throwing call fails every entry. */
  sendFails = false;
  sendThrows = false;
  tunFails = false;

  sendBatch(buf: Buffer, desc: Uint32Array, count: number, ok: Uint8Array): void {
    if (this.sendThrows) throw new Error('EBADF');
    for (let i = 0; i < count; i++) {
      ok[i] = this.sendFails ? 0 : 1;
      const start = desc[i * 3]!;
      if (!this.sendFails) this.sent.push({ packet: Buffer.from(buf.subarray(start, start + desc[i * 3 + 1]!)), address: formatIPv4(desc[i * 3 + 2]!) });
    }
  }

  /** IPv6 underlay sends are recorded with the address as RFC 5952 text. */
  sendBatch6(buf: Buffer, desc: Uint32Array, count: number, ok: Uint8Array, addrs: Uint8Array): void {
    if (this.sendThrows) throw new Error('EBADF');
    for (let i = 0; i < count; i++) {
      ok[i] = this.sendFails ? 0 : 1;
      const start = desc[i * 3]!;
      const address = formatIPv6(ipv6FromBytes(addrs, 16 * desc[i * 3 + 2]!));
      if (!this.sendFails) this.sent.push({ packet: Buffer.from(buf.subarray(start, start + desc[i * 3 + 1]!)), address });
    }
  }

  writeTunBatch(buf: Buffer, desc: Uint32Array, count: number, ok: Uint8Array): void {
    for (let i = 0; i < count; i++) {
      ok[i] = this.tunFails ? 0 : 1;
      const start = desc[i * 2]!;
      if (!this.tunFails) this.tun.push(Buffer.from(buf.subarray(start, start + desc[i * 2 + 1]!)));
    }
  }
}

/** `packet` as read from the TUN: one [u16 length][packet] record. */
export function encapOne(fwd: JsForwarder, packet: Buffer): void {
  const record = Buffer.alloc(2 + packet.length);
  record.writeUInt16BE(packet.length, 0);
  packet.copy(record, 2);
  fwd.encapBatch(record, 1);
}

/**
 * A datagram from `from` as the UDP reader delivers it: from a dotted address [u32 source][u16
 * length][flags][0] to decapBatch; from an IPv6 address [16 bytes source][u16 length][flags][0] to
 * decapBatch6 (the IPv6 socket's reader).
 */
export function decapOne(fwd: JsForwarder, datagram: Buffer, from: string, flags = 0): void {
  if (from.includes(':')) {
    const record = Buffer.alloc(20 + datagram.length);
    record.set(ipv6ToBytes(parseIPv6(from)), 0);
    record.writeUInt16BE(datagram.length, 16);
    record[18] = flags;
    datagram.copy(record, 20);
    fwd.decapBatch6(record, 1);
    return;
  }
  const record = Buffer.alloc(8 + datagram.length);
  record.writeUInt32BE(parseIPv4(from), 0);
  record.writeUInt16BE(datagram.length, 4);
  record[6] = flags;
  datagram.copy(record, 8);
  fwd.decapBatch(record, 1);
}
