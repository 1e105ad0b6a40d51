// Writes the reference model's verdict next to every input of the native fuzz harness's bursts
// (record format: native/fuzz/fuzz.h), so the C harness judges the engine by the same rules as
// the js fuzzer instead of a copy of them: after each ENCAP record an EXPECT_ENCAP record, after
// each DECAP record an EXPECT_DECAP record. The route set and MTU follow the ROUTES records, from
// the same start (DEFAULT_MASK, 1472) as the harness, across bursts.
import { DROP_REASONS } from '../../src/datapath/types.js';
import { DEFAULT_MASK, ipOf, rd16, rd32, refDecapMessage, refEncapTunRead, RouteSet, VNET_HDR_LEN, type Verdict } from './model.js';

const REC_ENCAP = 0;
const REC_DECAP = 1;
const REC_FAULTS = 2;
const REC_ROUTES = 3;
const REC_GSO = 4;
const REC_EXPECT_ENCAP = 5;
const REC_EXPECT_DECAP = 6;
const VERDICT_FORWARD = 0xff;
/** A TUN read never returns more than the virtio header and the largest packet. */
const MAX_READ = VNET_HDR_LEN + 65535;
/** The engine's receive buffer: a longer message arrives cut (MSG_TRUNC). */
const RX_BUF = 65536;

const verdictByte = (v: Verdict): number => {
  if (v === 'forward') return VERDICT_FORWARD;
  const i = DROP_REASONS.indexOf(v);
  if (i < 0) throw new Error(`no drop reason ${v}`);
  return i;
};

/** The model's state between bursts (the harness keeps the same). */
export class VectorWriter {
  private routes = new RouteSet(DEFAULT_MASK);
  private mtu = 1472;

  /** The burst with EXPECT records added, as pieces to write back to back. */
  annotate(b: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    let off = 0;
    let copied = 0; // b[copied, off) is still to be written as is
    const flushTo = (end: number): void => {
      if (end > copied) out.push(b.subarray(copied, end));
      copied = end;
    };
    while (off < b.length) {
      const kind = b[off++]!;
      if (kind === REC_ENCAP) {
        if (off + 4 > b.length) break;
        const len = Math.min(rd32(b, off), b.length - off - 4);
        const data = b.subarray(off + 4, off + 4 + len);
        // The length as the harness will read it (a cut last record would swallow the EXPECT).
        flushTo(off);
        out.push(u32(len));
        copied = off + 4;
        off += 4 + len;
        flushTo(off);
        out.push(this.expectEncap(data.subarray(0, MAX_READ)));
      } else if (kind === REC_DECAP) {
        if (off + 8 > b.length) break;
        const peer = b[off]!;
        const groSeg = rd16(b, off + 1);
        const truncFlag = (b[off + 3]! & 1) !== 0;
        const len = Math.min(rd32(b, off + 4), b.length - off - 8);
        flushTo(off + 4);
        out.push(u32(len));
        copied = off + 8;
        const start = off + 8;
        off = start + len;
        flushTo(off);
        const got = Math.min(len, RX_BUF);
        const sender = peer < this.routes.peers.length ? this.routes.peers[peer]! : `198.51.100.${peer}`;
        const verdicts = refDecapMessage(b, start, got, groSeg, truncFlag || len > RX_BUF, sender, this.routes);
        const x = new Uint8Array(9 + verdicts.length);
        x[0] = REC_EXPECT_DECAP;
        x.set(u32(ipOf(sender)), 1);
        x.set(u32(verdicts.length), 5);
        verdicts.forEach((v, i) => (x[9 + i] = verdictByte(v)));
        out.push(x);
      } else if (kind === REC_FAULTS) {
        if (off + 3 > b.length) break;
        off += 3;
      } else if (kind === REC_ROUTES) {
        if (off + 4 > b.length) break;
        this.routes = new RouteSet(rd16(b, off));
        const mtu = rd16(b, off + 2);
        this.mtu = Math.min(Math.max(mtu, 68), 65507);
        off += 4;
      } else if (kind === REC_GSO) {
        if (off + 1 > b.length) break;
        off += 1;
      } else {
        break; // the harness stops here too
      }
    }
    flushTo(b.length);
    return out;
  }

  private expectEncap(read: Uint8Array): Uint8Array {
    const ref = refEncapTunRead(read, this.routes, this.mtu);
    const x = new Uint8Array(12);
    x[0] = REC_EXPECT_ENCAP;
    x[1] = verdictByte(ref.verdict);
    x.set(u32(ref.units), 2);
    const [type, code] = ref.icmp ? ref.icmp.split('/').map(Number) : [0xff, 0xff];
    x[6] = type!;
    x[7] = code!;
    if (ref.verdict === 'forward') x.set(u32(this.routes.lookup(rd32(read, VNET_HDR_LEN + 16))!), 8);
    return x;
  }
}

function u32(v: number): Uint8Array {
  return Uint8Array.of(v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255);
}

