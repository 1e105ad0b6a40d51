// One packet at a time into a JsForwarder, through the same batch entry points and BatchIO the js
// engine uses in production: each packet becomes a one-record reader batch, and what leaves is
// recorded (copied: the forwarder hands out slices of its batch buffer).
import type { BatchIO, JsForwarder } from '../../src/datapath/js.js';
import { formatIPv4, parseIPv4 } from '../../src/net/cidr.js';

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

/** A datagram from `from` (dotted) as the UDP reader delivers it: [u32 source][u16 length][flags][0]. */
export function decapOne(fwd: JsForwarder, datagram: Buffer, from: string, flags = 0): void {
  const record = Buffer.alloc(8 + datagram.length);
  record.writeUInt32BE(parseIPv4(from), 0);
  record.writeUInt16BE(datagram.length, 4);
  record[6] = flags;
  datagram.copy(record, 8);
  fwd.decapBatch(record, 1);
}
