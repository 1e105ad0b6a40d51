// The js fuzzer's IPv6 phase: IPv6 packets (valid ones with and without extension headers, random
// bytes, mutations) one at a time into dual-stack forwarders with each combination of underlays,
// judged by the IPv6 reference model (model.ts); what leaves is checked against its input: the
// datagram (hop limit - 1, right underlay address), the TUN write, the ICMPv6 error (fields,
// checksum over the pseudo-header, quote, suppression rules). Now and then the send or TUN write
// an input leads to is refused or throws: it must show as one send-error / tun-write-error.
import { JsForwarder, type BatchIO } from '../../src/datapath/js.js';
import { TokenBucket } from '../../src/datapath/packet.js';
import { DROP_REASONS } from '../../src/datapath/types.js';
import { formatIPv4 } from '../../src/net/cidr.js';
import {
  formatIPv6Plain,
  LOCAL,
  LOCAL6,
  rd16,
  rdAddr6,
  refDecap6,
  refEncap6,
  refIcmp6Allowed,
  ROUTE_FAMILY6,
  RouteSet6,
  sum16,
  wr16,
  type Verdict,
} from './model.js';
import type { Rng } from './rng.js';

const MTUS = [1452, 1280, 1400, 9000, 1232];
const HOP_LIMITS = [0, 1, 2, 64, 64, 64, 255];
const EXT_TYPES = [0, 43, 60, 44, 60, 51, 50, 59];

export interface Ipv6FuzzResult {
  inputs: number;
  /** Inputs whose send / TUN write was made to fail (refused or thrown). */
  faults: number;
  verdicts: { encap: Record<string, number>; decap: Record<string, number> };
  icmp6: number;
}

/** One emitted packet, as the I/O saw it. */
interface Out {
  kind: 'send' | 'tun';
  bytes: Buffer;
  to: string;
}

class Ipv6IO implements BatchIO {
  out: Out[] = [];
  /** The next I/O call fails: its entries reported not done ('fail'), or the call throws. */
  fault: '' | 'fail' | 'throw' = '';
  /** Entries a fault hit (each must show as one send-error / tun-write-error). */
  failed = 0;
  sendBatch(buf: Buffer, desc: Uint32Array, count: number, ok: Uint8Array): void {
    for (let i = 0; i < count; i++) {
      this.out.push({ kind: 'send', bytes: Buffer.from(buf.subarray(desc[3 * i]!, desc[3 * i]! + desc[3 * i + 1]!)), to: formatIPv4(desc[3 * i + 2]!) });
    }
    this.outcome(count, ok, 'EBADF (injected)');
  }
  sendBatch6(buf: Buffer, desc: Uint32Array, count: number, ok: Uint8Array, addrs: Uint8Array): void {
    for (let i = 0; i < count; i++) {
      const to = formatIPv6Plain(rdAddr6(addrs, 16 * desc[3 * i + 2]!));
      this.out.push({ kind: 'send', bytes: Buffer.from(buf.subarray(desc[3 * i]!, desc[3 * i]! + desc[3 * i + 1]!)), to });
    }
    this.outcome(count, ok, 'EAFNOSUPPORT (injected)');
  }
  writeTunBatch(buf: Buffer, desc: Uint32Array, count: number, ok: Uint8Array): void {
    for (let i = 0; i < count; i++) {
      this.out.push({ kind: 'tun', bytes: Buffer.from(buf.subarray(desc[2 * i]!, desc[2 * i]! + desc[2 * i + 1]!)), to: '' });
    }
    this.outcome(count, ok, 'EIO (injected)');
  }
  private outcome(count: number, ok: Uint8Array, thrown: string): void {
    const fault = this.fault;
    this.fault = '';
    if (fault !== '') this.failed += count;
    if (fault === 'throw') throw new Error(thrown);
    ok.fill(fault === 'fail' ? 0 : 1, 0, count);
  }
}

function addr(rng: Rng, rs: RouteSet6, towardsPeer: boolean): Buffer {
  const b = Buffer.alloc(16);
  const k = rng.int(10);
  let base: bigint | undefined;
  if (towardsPeer && rs.routes.length > 0 && k < 6) base = rng.pick(rs.routes).subnet6!.ip;
  else if (k < 8) base = LOCAL6.ip;
  if (base === undefined) {
    rng.fill(b);
    if (k === 9) b[0] = 0xff; // multicast
    return b;
  }
  let v = base | BigInt(rng.int(1 << 16)) | (rng.chance(30) ? 0n : BigInt(rng.int(1 << 30)) << 32n);
  for (let i = 15; i >= 0; i--, v >>= 8n) b[i] = Number(v & 0xffn);
  return b;
}

/** A valid IPv6 packet (possibly with extension headers), or random bytes, or a mutation. */
function genPacket(rng: Rng, rs: RouteSet6, encap: boolean, mtu: number): Buffer {
  const ext: Buffer[] = [];
  const types: number[] = [];
  const n = rng.chance(60) ? 0 : rng.int(10);
  for (let i = 0; i < n; i++) {
    const t = i === 0 && rng.chance(50) ? 0 : rng.pick(EXT_TYPES);
    types.push(t);
    const len = t === 44 ? 8 : 8 * (1 + (rng.chance(80) ? rng.int(3) : rng.int(40)));
    const h = Buffer.alloc(len);
    rng.fill(h);
    h[1] = t === 44 ? 0 : len / 8 - 1;
    if (t === 44 && rng.chance(50)) wr16(h, 2, 0x0001); // a first fragment
    ext.push(h);
  }
  const proto = rng.pick([6, 17, 58, 58, 59]);
  const payloadLen = rng.chance(15) ? Math.max(0, mtu - 40 - 8 + rng.int(24)) : rng.int(120);
  const payload = Buffer.alloc(payloadLen);
  rng.fill(payload);
  if (proto === 58 && payloadLen > 0) payload[0] = rng.pick([1, 2, 3, 4, 127, 128, 129, 135]);
  for (let i = 0; i < ext.length; i++) ext[i]![0] = i + 1 < ext.length ? types[i + 1]! : proto;
  const body = Buffer.concat([...ext, payload]);
  const p = Buffer.alloc(40 + body.length);
  p[0] = 0x60;
  wr16(p, 4, body.length);
  p[6] = ext.length > 0 ? types[0]! : proto;
  p[7] = rng.pick(HOP_LIMITS);
  addr(rng, rs, !encap).copy(p, 8);
  addr(rng, rs, encap).copy(p, 24);
  if (rng.chance(3)) p.subarray(8, 24).fill(0); // ::
  body.copy(p, 40);
  const k = rng.int(100);
  if (k < 70) return p;
  if (k < 80) return p.subarray(0, rng.int(p.length + 1)); // cut short
  if (k < 85) return Buffer.concat([p, Buffer.alloc(rng.int(20), 0xee)]); // trailing bytes
  if (k < 90) {
    wr16(p, 4, rng.chance(50) ? 0 : rng.int(65536)); // payload length
    return p;
  }
  for (let i = 1 + rng.int(4); i > 0; i--) p[rng.int(p.length)] ^= 1 << rng.int(8);
  // Version 4 would take the IPv4 path, which the main fuzz covers: make it another non-6 version.
  if (p[0]! >> 4 === 4) p[0] = 0x70 | (p[0]! & 0x0f);
  return p;
}

/** Runs `count` IPv6 inputs; every disagreement with the model goes to `violation`. */
export function runIpv6Fuzz(rng: Rng, count: number, violation: (msg: string) => void): Ipv6FuzzResult {
  const result: Ipv6FuzzResult = { inputs: 0, faults: 0, verdicts: { encap: {}, decap: {} }, icmp6: 0 };
  const io = new Ipv6IO();
  let now = 0;
  let rs = new RouteSet6(0x3f);
  let mtu = 1452;
  let fwd = new JsForwarder({ localSubnet: LOCAL, mtu, localSubnet6: LOCAL6 }, io, new TokenBucket(1e9, 1e9, () => now));
  const tally = (t: Record<string, number>, v: string) => (t[v] = (t[v] ?? 0) + 1);
  for (let i = 0; i < count; i++) {
    if (i % 200 === 0) {
      const hasV4 = rng.chance(70);
      const hasV6 = !hasV4 || rng.chance(60);
      rs = new RouteSet6(rng.chance(40) ? 0x3f : rng.int(1 << ROUTE_FAMILY6.length), hasV4, hasV6);
      mtu = rng.pick(MTUS);
      const config = { localSubnet: LOCAL, mtu, localSubnet6: LOCAL6, bindIP: hasV4 ? 0xc0a84d02 : 0, ...(hasV6 ? { bindIPv6: 0xfd77n << 112n } : {}) };
      fwd = new JsForwarder(config, io, new TokenBucket(1e9, 1e9, () => now));
      fwd.setRoutes(rs.routes);
    }
    now += 1;
    result.inputs++;
    const encap = rng.chance(60);
    const p = genPacket(rng, rs, encap, mtu);
    const original = Buffer.from(p);
    const before = fwd.stats({});
    io.out = [];
    // Now and then the I/O call this input leads to fails (as the IPv4 phase injects them).
    io.fault = rng.chance(6) ? (rng.chance(50) ? 'fail' : 'throw') : '';
    const faulted = io.failed;
    const where = `ipv6 input ${i} (${encap ? 'encap' : 'decap'}, ${original.subarray(0, 48).toString('hex')})`;
    const fail = (msg: string) => violation(`${where}: ${msg}`);
    let expected: Verdict;
    let icmp = '';
    let to = '';
    if (encap) {
      const record = Buffer.alloc(2 + p.length);
      wr16(record, 0, p.length);
      p.copy(record, 2);
      ({ verdict: expected, icmp, to } = refEncap6(original, 0, original.length, rs, mtu));
      fwd.encapBatch(record, 1);
    } else {
      const senders = rs.routes.flatMap((r) => [r.publicIP !== 0 ? formatIPv4(r.publicIP) : '', r.publicIPv6 !== undefined ? formatIPv6Plain(r.publicIPv6) : ''].filter((s) => s !== ''));
      const sender = rng.chance(90) && senders.length > 0 ? rng.pick(senders) : rng.chance(50) ? '192.168.77.99' : formatIPv6Plain(0xfd77n << 112n | 0x99n);
      expected = refDecap6(original, 0, original.length, sender, rs);
      const v6 = sender.includes(':');
      const hdr = v6 ? 20 : 8;
      const record = Buffer.alloc(hdr + p.length);
      if (v6) {
        let v = BigInt(`0x${sender.split(':').map((g) => g.padStart(4, '0')).join('')}`);
        for (let b = 15; b >= 0; b--, v >>= 8n) record[b] = Number(v & 0xffn);
      } else {
        sender.split('.').forEach((o, b) => (record[b] = Number(o)));
      }
      wr16(record, hdr - 4, p.length);
      p.copy(record, hdr);
      if (v6) fwd.decapBatch6(record, 1);
      else fwd.decapBatch(record, 1);
    }
    const after = fwd.stats({});
    const drops = after.drops[encap ? 'encap' : 'decap'];
    const was = before.drops[encap ? 'encap' : 'decap'];
    const got = DROP_REASONS.filter((r) => drops[r] !== was[r]);
    const moved = encap ? after.encap.packets - before.encap.packets : after.decap.packets - before.decap.packets;
    const once = got.every((r) => drops[r] - was[r] === 1);
    const verdict = once && got.length >= 1 && moved === 0 ? got.join('+') : got.length === 0 && moved === 1 ? 'forward' : `drops ${got.join('+')} / ${moved} moved`;
    // A failed send is a send-error instead of a forward; a failed TUN write a tun-write-error
    // instead of a decap forward, or on top of the drop whose ICMPv6 error it refused.
    const hit = io.failed - faulted;
    let want: string = expected;
    if (hit > 0) {
      result.faults++;
      if (encap && expected === 'forward') want = 'send-error';
      else if (!encap && expected === 'forward') want = 'tun-write-error';
      else want = DROP_REASONS.filter((r) => r === expected || r === 'tun-write-error').join('+');
    }
    const ioErrors = drops['send-error'] - was['send-error'] + drops['tun-write-error'] - was['tun-write-error'];
    if (ioErrors !== hit) fail(`${hit} injected I/O failures, ${ioErrors} counted send-error/tun-write-error`);
    if (io.fault !== '' && (expected === 'forward' || icmp !== '')) fail(`the ${expected} input made no I/O call to fail`);
    io.fault = '';
    tally(result.verdicts[encap ? 'encap' : 'decap'], verdict);
    if (verdict !== want) fail(`verdict ${verdict}, reference ${want}`);
    checkOutputs(io.out, original, encap, expected, icmp, to, mtu, fail);
    if (icmp !== '') result.icmp6++;
  }
  return result;
}

function checkOutputs(out: Out[], o: Buffer, encap: boolean, expected: Verdict, icmp: string, to: string, mtu: number, fail: (m: string) => void): void {
  const sends = out.filter((x) => x.kind === 'send');
  const tun = out.filter((x) => x.kind === 'tun');
  const total = o.length >= 40 ? 40 + rd16(o, 4) : 0;
  if (encap) {
    if (expected === 'forward') {
      if (sends.length !== 1) return fail(`${sends.length} datagrams for a forwarded packet`);
      const s = sends[0]!;
      const norm = s.to.includes(':') ? formatIPv6Plain(BigInt(`0x${expandV6(s.to)}`)) : s.to;
      if (norm !== to) fail(`sent to ${s.to}, reference says ${to}`);
      if (s.bytes.length !== total || s.bytes[7] !== o[7]! - 1) fail('datagram is not the packet with hop limit - 1');
      for (let i = 0; i < total; i++) if (i !== 7 && s.bytes[i] !== o[i]) return fail(`datagram byte ${i} changed`);
    } else if (sends.length !== 0) fail(`a datagram for a ${expected} packet`);
    if ((icmp === '') !== (tun.length === 0) || tun.length > 1) return fail(`${tun.length} ICMPv6 errors, reference ${icmp || 'none'}`);
    if (tun.length === 1) checkIcmp6(tun[0]!.bytes, o, total, icmp, mtu, fail);
    return;
  }
  if (sends.length !== 0) fail('decap sent a datagram');
  if (expected !== 'forward') {
    if (tun.length !== 0) fail(`a TUN write for a ${expected} datagram`);
    return;
  }
  if (tun.length !== 1 || !tun[0]!.bytes.equals(o.subarray(0, total))) fail('decap did not write the inner packet as it came');
}

function expandV6(text: string): string {
  const [h, t] = text.split('::') as [string, string | undefined];
  const hs = h ? h.split(':') : [];
  const ts = t !== undefined && t !== '' ? t.split(':') : [];
  return [...hs, ...new Array<string>(8 - hs.length - ts.length).fill('0'), ...ts].map((g) => g.padStart(4, '0')).join('');
}

function checkIcmp6(p: Buffer, o: Buffer, total: number, icmp: string, mtu: number, fail: (m: string) => void): void {
  const [type, code] = icmp.split('/').map(Number) as [number, number];
  const len = rd16(p, 4);
  if (p[0] !== 0x60 || p[6] !== 58 || p[7] !== 64 || len !== p.length - 40 || p.length > 1280) return fail('bad ICMPv6 IPv6 header');
  if (rdAddr6(p, 8) !== LOCAL6.ip || !p.subarray(24, 40).equals(o.subarray(8, 24))) return fail('ICMPv6 error not from our tunnel address to the source');
  // The pseudo-header: source, destination, upper-layer length, zeros, next header 58.
  const pseudo = Buffer.alloc(40);
  p.copy(pseudo, 0, 8, 40);
  pseudo.writeUInt32BE(len, 32);
  pseudo[39] = 58;
  if (sum16(p, 40, len, sum16(pseudo, 0, 40)) !== 0xffff) return fail('bad ICMPv6 checksum');
  if (p[40] !== type || p[41] !== code) return fail(`type ${p[40]}/${p[41]}, reference ${icmp}`);
  if (p.readUInt32BE(44) !== (type === 2 ? mtu : 0)) return fail(`rest word ${p.readUInt32BE(44)}`);
  const quote = Math.min(total, 1280 - 48);
  if (!p.subarray(48).equals(o.subarray(0, quote))) return fail('the quote is not the start of the packet');
  if (!refIcmp6Allowed(o, 0, total)) fail('an ICMPv6 error the suppression rules forbid');
}
