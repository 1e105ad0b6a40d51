// Writes the reference model's verdict next to every input of the native fuzz harness's bursts
// (record format: native/fuzz/fuzz.h), so the C harness judges the engine by the same rules as
// the js fuzzer instead of a copy of them: after each ENCAP record an EXPECT_ENCAP record, after
// each DECAP record an EXPECT_DECAP record. The route set and MTU follow the ROUTES records, from
// the same start (DEFAULT_MASK, 1472) as the harness, across bursts. After a ROUTES6 record the
// node is dual-stack (the IPv6 rules, RouteSet6) and the expectations are EXPECT_ENCAP6 /
// EXPECT_DECAP6, with 16-byte addresses, until the next ROUTES record.
import { formatIPv4 } from '../../src/net/cidr.js';
import { DROP_REASONS } from '../../src/datapath/types.js';
import {
  addr16,
  DEFAULT_MASK,
  formatIPv6Plain,
  ipOf,
  rd16,
  rd32,
  refDecapMessage,
  refDecapMessage6,
  refEncapTunRead,
  refEncapTunRead6,
  RouteSet,
  RouteSet6,
  VNET_HDR_LEN,
  type Verdict,
} from './model.js';

const REC_ENCAP = 0;
const REC_DECAP = 1;
const REC_FAULTS = 2;
const REC_ROUTES = 3;
const REC_GSO = 4;
const REC_EXPECT_ENCAP = 5;
const REC_EXPECT_DECAP = 6;
const REC_ROUTES6 = 7;
const REC_EXPECT_ENCAP6 = 8;
const REC_EXPECT_DECAP6 = 9;
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
  /** Set while the node is dual-stack (after ROUTES6), with its senders in peer-index order. */
  private routes6: RouteSet6 | undefined;
  private senders6: string[] = [];

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
        if (this.routes6) {
          out.push(this.expectDecap6(b, start, got, groSeg, truncFlag || len > RX_BUF, peer, this.routes6));
          continue;
        }
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
        this.routes6 = undefined;
        off += 4;
      } else if (kind === REC_ROUTES6) {
        if (off + 4 > b.length) break;
        const underlays = b[off + 1]!;
        // No underlay at all is no node: the harness takes it as an IPv4 one, as here.
        const rs = new RouteSet6(b[off]!, (underlays & 1) !== 0 || (underlays & 3) === 0, (underlays & 2) !== 0);
        this.routes6 = rs;
        this.senders6 = [
          ...new Set(
            rs.routes.flatMap((r) => [
              rs.hasV4 && r.publicIP !== 0 ? formatIPv4(r.publicIP) : '',
              rs.hasV6 && r.publicIPv6 !== undefined ? formatIPv6Plain(r.publicIPv6) : '',
            ]),
          ),
        ].filter((x) => x !== '');
        this.mtu = Math.min(Math.max(rd16(b, off + 2), 1280), 65507);
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

  /** A stranger for peer index i >= the senders: IPv4 for even i (when the node has an IPv4 underlay). */
  private sender6(i: number, rs: RouteSet6): string {
    if (i < this.senders6.length) return this.senders6[i]!;
    return rs.hasV4 && (i % 2 === 0 || !rs.hasV6) ? `198.51.100.${i}` : formatIPv6Plain((0xfd77n << 112n) | 0xff00n | BigInt(i));
  }

  private expectDecap6(b: Uint8Array, start: number, len: number, groSeg: number, truncated: boolean, peer: number, rs: RouteSet6): Uint8Array {
    const sender = this.sender6(peer, rs);
    const verdicts = refDecapMessage6(b, start, len, groSeg, truncated, sender, rs);
    const x = new Uint8Array(21 + verdicts.length);
    x[0] = REC_EXPECT_DECAP6;
    x.set(addr16(sender), 1);
    x.set(u32(verdicts.length), 17);
    verdicts.forEach((v, i) => (x[21 + i] = verdictByte(v)));
    return x;
  }

  private expectEncap(read: Uint8Array): Uint8Array {
    if (this.routes6) {
      const ref = refEncapTunRead6(read, this.routes6, this.mtu);
      const x = new Uint8Array(24);
      x[0] = REC_EXPECT_ENCAP6;
      x[1] = verdictByte(ref.verdict);
      x.set(u32(ref.units), 2);
      const [type, code] = ref.icmp ? ref.icmp.split('/').map(Number) : [0xff, 0xff];
      x[6] = type!;
      x[7] = code!;
      if (ref.verdict === 'forward') x.set(addr16(ref.to), 8);
      return x;
    }
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

