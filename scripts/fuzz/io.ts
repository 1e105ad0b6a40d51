// The I/O the js fuzzer gives JsForwarder: the BatchIO production uses, checking everything the
// forwarder emits against the input it came from, and injecting failures (throwing batch calls,
// refused sends and TUN writes, refused ICMP errors).
import type { BatchIO } from '../../src/datapath/js.js';
import { formatIPv4 } from '../../src/net/cidr.js';
import {
  inSubnet,
  LOCAL,
  rd16,
  rd32,
  refIcmpAllowed,
  refValidate,
  sum16,
  TUNNEL_IP,
  type RouteSet,
  type Verdict,
} from './model.js';

/** One packet (encap) or datagram (decap) the forwarder was handed in the current call. */
export interface InputRecord {
  /** Offset of the packet in the buffer the forwarder holds. */
  start: number;
  /** Its bytes as they were before the call. */
  original: Uint8Array;
  /** The reference verdict ('forward': to be sent / written). */
  expected: Verdict;
  /** Encap: the ICMP error expected ("type/code"), or ''. */
  icmp: string;
  /** Decap: the sender (dotted). */
  sender: string;
  /** Datagrams or TUN writes seen for it, and ICMP errors quoting it. */
  emitted: number;
  icmpSeen: number;
}

export class CheckingIO implements BatchIO {
  phase: 'encap' | 'decap' | 'idle' = 'idle';
  /** The buffer the forwarder holds in the current call, and what is in it. */
  buffer?: Uint8Array;
  readonly records = new Map<number, InputRecord>();
  routes: RouteSet;
  mtu = 1472;

  // What came out.
  batchSent = 0;
  batchFailed = 0;
  tunWrites = 0;
  icmpWritten = 0;
  icmpRefused = 0;
  lastIcmp = '';

  // Faults to inject.
  /** ICMP error writes the TUN refuses, or that throw. */
  tunFails = 0;
  tunThrows = 0;
  /** Entries a batch call reports as not sent / not written; a whole batch call that throws. */
  batchFails = 0;
  batchThrows = 0;

  constructor(
    routes: RouteSet,
    private readonly violation: (msg: string) => void,
  ) {
    this.routes = routes;
  }

  /** Starts a call: the forwarder will be given `buffer` holding `records`. */
  begin(phase: 'encap' | 'decap', buffer: Uint8Array, records: InputRecord[]): void {
    this.phase = phase;
    this.buffer = buffer;
    this.records.clear();
    for (const r of records) this.records.set(r.start, r);
  }

  end(): void {
    this.phase = 'idle';
    this.buffer = undefined;
    this.records.clear();
  }

  // ---- BatchIO ----

  sendBatch(buf: Buffer, desc: Uint32Array, count: number, ok: Uint8Array): void {
    if (this.phase !== 'encap' || buf !== this.buffer) this.violation('sendBatch() outside encapBatch or on another buffer');
    for (let i = 0; i < count; i++) {
      const start = desc[i * 3]!;
      this.checkDatagram(start, buf.subarray(start, start + desc[i * 3 + 1]!), formatIPv4(desc[i * 3 + 2]!));
    }
    this.batchSent += this.batchOutcome(count, ok, 'EBADF (injected)');
  }

  /**
   * Applies the injected failures to one batch call: the whole call throws, or single entries fail
   * (ok[i] = 0). Returns how many entries succeeded.
   */
  private batchOutcome(count: number, ok: Uint8Array, thrown: string): number {
    if (this.batchThrows > 0) {
      this.batchThrows--;
      this.batchFailed += count;
      throw new Error(thrown);
    }
    let succeeded = 0;
    for (let i = 0; i < count; i++) {
      if (this.batchFails > 0) {
        this.batchFails--;
        this.batchFailed++;
        ok[i] = 0;
      } else {
        succeeded++;
        ok[i] = 1;
      }
    }
    return succeeded;
  }

  writeTunBatch(buf: Buffer, desc: Uint32Array, count: number, ok: Uint8Array): void {
    if (this.phase === 'encap') {
      this.writeIcmp(buf, desc, count, ok);
      return;
    }
    if (this.phase !== 'decap' || buf !== this.buffer) this.violation('writeTunBatch() outside decapBatch or on another buffer');
    for (let i = 0; i < count; i++) {
      const start = desc[i * 2]!;
      this.checkDecapWrite(start, buf.subarray(start, start + desc[i * 2 + 1]!));
    }
    this.tunWrites += this.batchOutcome(count, ok, 'EIO (injected)');
  }

  /** Encap writes into the TUN only ICMP errors, one per call. */
  private writeIcmp(buf: Buffer, desc: Uint32Array, count: number, ok: Uint8Array): void {
    if (count !== 1) this.violation(`an ICMP error write of ${count} packets`);
    if (this.tunThrows > 0 || this.tunFails > 0) {
      this.icmpRefused++;
      if (this.tunThrows > 0) {
        this.tunThrows--;
        throw new Error('EIO (injected)');
      }
      this.tunFails--;
      ok[0] = 0;
      return;
    }
    this.checkIcmp(buf.subarray(desc[0]!, desc[0]! + desc[1]!));
    this.icmpWritten++;
    ok[0] = 1;
  }

  // ---- checks ----

  private record(start: number, what: string): InputRecord | undefined {
    const r = this.records.get(start);
    if (!r) this.violation(`${what} at offset ${start} is no input packet`);
    else if (++r.emitted > 1) this.violation(`${what} at offset ${start} emitted twice`);
    return r;
  }

  /** The encapsulated packet: its input unchanged but for TTL - 1 and the patched checksum. */
  private checkDatagram(start: number, p: Uint8Array, address: string): void {
    const r = this.record(start, 'datagram');
    if (!r) return;
    const o = r.original;
    const total = rd16(o, 2);
    if (r.expected !== 'forward') this.violation(`datagram for an input the reference says is ${r.expected}`);
    if (p.length !== total || total > this.mtu) {
      this.violation(`datagram of ${p.length} bytes (total length ${total}, mtu ${this.mtu})`);
      return;
    }
    const dst = rd32(p, 16);
    const peer = this.routes.lookup(dst);
    if (inSubnet(dst, LOCAL.ip, LOCAL.prefixLen) || peer === undefined || formatIPv4(peer) !== address) {
      this.violation(`datagram for ${formatIPv4(dst)} sent to ${address}, route says ${peer === undefined ? 'none' : formatIPv4(peer)}`);
    }
    for (let i = 0; i < total; i++) {
      if (i !== 8 && i !== 10 && i !== 11 && p[i] !== o[i]) {
        this.violation(`datagram byte ${i} changed (${o[i]} -> ${p[i]})`);
        return;
      }
    }
    if (p[8] !== o[8]! - 1 || p[8] === 0) this.violation(`TTL ${o[8]} became ${p[8]}`);
    const hl = (p[0]! & 15) * 4;
    if (sum16(o, 0, hl) === 0xffff && sum16(p, 0, hl) !== 0xffff) this.violation('TTL decrement broke a valid header checksum');
  }

  /** An ICMP error: headers, checksums, type, and a quote of an input that should get exactly it. */
  private checkIcmp(p: Uint8Array): void {
    const fail = (what: string): void => this.violation(`ICMP error: ${what} (${Buffer.from(p.subarray(0, 48)).toString('hex')})`);
    if (p.length < 48 || refValidate(p, 0, p.length, true) !== 'forward' || rd16(p, 2) !== p.length) return fail('bad IPv4 header');
    if (p[0] !== 0x45 || p[9] !== 1 || p[8] !== 64 || rd16(p, 6) !== 0 || rd32(p, 12) !== TUNNEL_IP) return fail('bad header fields');
    if (sum16(p, 20, p.length - 20) !== 0xffff) return fail('bad ICMP checksum');
    const type = p[20]!;
    const code = p[21]!;
    const rest = rd32(p, 24);
    const ok = (type === 3 && code === 0 && rest === 0) || (type === 11 && code === 0 && rest === 0) || (type === 3 && code === 4 && rest === (this.mtu & 0xffff));
    if (!ok) return fail(`type ${type} code ${code} rest ${rest}`);
    const q = 28;
    const qhl = (p[q]! & 15) * 4;
    const qlen = p.length - q;
    if (qhl < 20 || qlen < qhl || qlen > qhl + 8) return fail(`quote of ${qlen} bytes`);
    if (rd32(p, 16) !== rd32(p, q + 12)) return fail('not sent to the offending source');
    if (!refIcmpAllowed(p, q, qlen)) return fail('about a packet that must not get one');
    this.lastIcmp = `${type}/${code}`;
    // The quote is an input's header and first payload bytes, as it arrived.
    for (const r of this.records.values()) {
      if (r.icmpSeen || r.icmp !== this.lastIcmp || r.original.length < qlen) continue;
      let same = true;
      for (let i = 0; i < qlen && same; i++) same = r.original[i] === p[q + i];
      if (same) {
        r.icmpSeen++;
        return;
      }
    }
    fail(`${this.lastIcmp} quotes no input the reference gives that error`);
  }

  /** A decapsulated packet: its datagram's first total-length bytes, from inside the sender's lease. */
  private checkDecapWrite(start: number, p: Uint8Array): void {
    const r = this.record(start, 'TUN write');
    if (!r) return;
    const o = r.original;
    const total = rd16(o, 2);
    if (r.expected !== 'forward') this.violation(`TUN write of a datagram the reference says is ${r.expected}`);
    if (p.length !== total) return this.violation(`decap wrote ${p.length} bytes of a ${total}-byte packet`);
    for (let i = 0; i < total; i++) if (p[i] !== o[i]) return this.violation(`decap changed byte ${i}`);
    if (refValidate(p, 0, p.length, true) !== 'forward') this.violation('decap wrote an invalid packet');
    if (p[8] === 0) this.violation('decap wrote a packet with TTL 0');
    if (!this.routes.admits(r.sender, rd32(p, 12))) this.violation(`decap wrote a packet from ${formatIPv4(rd32(p, 12))} for sender ${r.sender}`);
  }
}
