import { describe, expect, it } from 'vitest';
import { parseIPv4 } from '../../src/net/cidr.js';
import {
  buildFragNeeded,
  buildNetUnreachable,
  buildTimeExceeded,
  decrementTTL,
  hasDF,
  icmpErrorAllowed,
  internetChecksum,
  TokenBucket,
  validateIPv4,
} from '../../src/datapath/packet.js';

interface PacketOptions {
  src?: string;
  dst?: string;
  ttl?: number;
  protocol?: number;
  payload?: number[] | Buffer;
  options?: number[];
  flagsFragment?: number;
  id?: number;
}

/** A valid IPv4 packet with a correct header checksum. */
function ipPacket(o: PacketOptions = {}): Buffer {
  const options = Buffer.from(o.options ?? []);
  const payload = Buffer.from(o.payload ?? [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  const headerLen = 20 + options.length;
  const buf = Buffer.alloc(headerLen + payload.length);
  buf[0] = 0x40 | (headerLen / 4);
  buf.writeUInt16BE(buf.length, 2);
  buf.writeUInt16BE(o.id ?? 0x1234, 4);
  buf.writeUInt16BE(o.flagsFragment ?? 0x4000, 6);
  buf[8] = o.ttl ?? 64;
  buf[9] = o.protocol ?? 17;
  buf.writeUInt32BE(parseIPv4(o.src ?? '10.244.1.5'), 12);
  buf.writeUInt32BE(parseIPv4(o.dst ?? '10.244.2.7'), 16);
  options.copy(buf, 20);
  payload.copy(buf, headerLen);
  buf.writeUInt16BE(internetChecksum(buf, 0, headerLen), 10);
  return buf;
}

function icmpEcho(o: PacketOptions = {}): Buffer {
  const icmp = Buffer.from([8, 0, 0, 0, 0x12, 0x34, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x11, 0x22]);
  icmp.writeUInt16BE(internetChecksum(icmp, 0, icmp.length), 2);
  return ipPacket({ ...o, protocol: 1, payload: icmp });
}

/** Straightforward reference checksum (RFC 1071 as written) to compare against. */
function referenceChecksum(bytes: Buffer): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i += 2) {
    sum += (bytes[i]! << 8) + (i + 1 < bytes.length ? bytes[i + 1]! : 0);
    sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  }
  return ~sum & 0xffff;
}

describe('validateIPv4', () => {
  it('accepts a well-formed packet, with or without checksum verification', () => {
    const p = ipPacket();
    expect(validateIPv4(p, 0, p.length, false)).toBe('ok');
    expect(validateIPv4(p, 0, p.length, true)).toBe('ok');
  });

  it('accepts a packet at an offset inside a larger buffer, and ignores trailing bytes', () => {
    const p = ipPacket();
    const big = Buffer.concat([Buffer.alloc(7, 0xee), p, Buffer.alloc(5, 0xee)]);
    expect(validateIPv4(big, 7, p.length + 5, true)).toBe('ok');
  });

  it('accepts header options when the checksum covers them', () => {
    const p = ipPacket({ options: [1, 1, 1, 0] });
    expect(validateIPv4(p, 0, p.length, true)).toBe('ok');
  });

  it('drops anything shorter than 20 bytes as truncated', () => {
    const p = ipPacket();
    for (const len of [0, 1, 19]) expect(validateIPv4(p, 0, len, true)).toBe('truncated');
  });

  it('drops a length that runs past the buffer as truncated', () => {
    const p = ipPacket();
    expect(validateIPv4(p, 10, p.length, true)).toBe('truncated');
  });

  it('drops IPv6 and other versions as not-ip', () => {
    const v6 = Buffer.alloc(48);
    v6[0] = 0x60;
    expect(validateIPv4(v6, 0, v6.length, false)).toBe('not-ip');
    const p = ipPacket();
    p[0] = 0x05 | (0 << 4);
    expect(validateIPv4(p, 0, p.length, false)).toBe('not-ip');
  });

  it('drops IHL < 5 as malformed', () => {
    const p = ipPacket();
    p[0] = 0x44;
    expect(validateIPv4(p, 0, p.length, false)).toBe('malformed');
  });

  it('drops total length < header length as malformed', () => {
    const p = ipPacket();
    p.writeUInt16BE(19, 2);
    expect(validateIPv4(p, 0, p.length, false)).toBe('malformed');
    const withOptions = ipPacket({ options: [1, 1, 1, 0] });
    withOptions.writeUInt16BE(20, 2);
    expect(validateIPv4(withOptions, 0, withOptions.length, false)).toBe('malformed');
  });

  it('drops a bad header checksum as malformed only when verifying', () => {
    const p = ipPacket();
    p[10]! ^= 0x01;
    expect(validateIPv4(p, 0, p.length, true)).toBe('malformed');
    expect(validateIPv4(p, 0, p.length, false)).toBe('ok');
  });

  it('drops total length above the bytes read as truncated', () => {
    const p = ipPacket();
    expect(validateIPv4(p, 0, p.length - 1, true)).toBe('truncated');
    const header = ipPacket({ options: [1, 1, 1, 1, 1, 1, 1, 0] });
    // Options cut short: fewer bytes than the header length claims.
    expect(validateIPv4(header, 0, 24, true)).toBe('truncated');
  });

  it('never throws on random bytes', () => {
    let seed = 7;
    const rnd = (): number => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 16;
    const verdicts = new Set<string>();
    for (let i = 0; i < 20_000; i++) {
      const len = rnd() % 80;
      const b = Buffer.alloc(len);
      for (let j = 0; j < len; j++) b[j] = rnd() & 0xff;
      if (len > 0 && i % 2 === 0) b[0] = 0x40 | (b[0]! & 0x0f);
      verdicts.add(validateIPv4(b, 0, len, i % 3 === 0));
    }
    expect([...verdicts].sort()).toEqual(['malformed', 'not-ip', 'truncated'].sort());
  });
});

describe('internetChecksum', () => {
  it('matches the RFC 1071 worked example', () => {
    // RFC 1071 section 3: words 0001 f203 f4f5 f6f7 sum to ddf2 (one's complement sum).
    const data = Buffer.from([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]);
    expect(internetChecksum(data, 0, data.length)).toBe(~0xddf2 & 0xffff);
  });

  it('is zero over a header that carries its own checksum', () => {
    const p = ipPacket();
    expect(internetChecksum(p, 0, 20)).toBe(0);
  });

  it('handles odd lengths and matches a reference on random data up to 64 KiB', () => {
    let seed = 99;
    const rnd = (): number => (seed = (seed * 1664525 + 1013904223) >>> 0) >>> 24;
    for (const len of [1, 3, 20, 21, 1499, 65535]) {
      const b = Buffer.alloc(len);
      for (let i = 0; i < len; i++) b[i] = rnd();
      expect(internetChecksum(b, 0, len)).toBe(referenceChecksum(b));
    }
    const ones = Buffer.alloc(65535, 0xff);
    expect(internetChecksum(ones, 0, ones.length)).toBe(referenceChecksum(ones));
  });
});

describe('decrementTTL (RFC 1624)', () => {
  it('decrements by one and keeps the header checksum valid', () => {
    const p = ipPacket({ ttl: 64 });
    decrementTTL(p, 0);
    expect(p[8]).toBe(63);
    expect(internetChecksum(p, 0, 20)).toBe(0);
  });

  it('equals a full recompute for many random headers, every TTL value 2..255', () => {
    let seed = 12345;
    const rnd = (): number => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 16;
    for (let i = 0; i < 20_000; i++) {
      const p = Buffer.alloc(20);
      for (let j = 0; j < 20; j++) p[j] = rnd() & 0xff;
      p[0] = 0x45;
      p[8] = 2 + (i % 254);
      p.writeUInt16BE(0, 10);
      p.writeUInt16BE(internetChecksum(p, 0, 20), 10);
      const expected = Buffer.from(p);
      expected[8]! -= 1;
      expected.writeUInt16BE(0, 10);
      expected.writeUInt16BE(internetChecksum(expected, 0, 20), 10);
      decrementTTL(p, 0);
      expect(p.equals(expected)).toBe(true);
    }
  });

  it('is right at the 0x0000/0xFFFF corners of the checksum, for every TTL', () => {
    // For each TTL, pick the source word that makes the checksum before the decrement hit a
    // corner: 0x0000 (sum is -0), 0xff00 (the result becomes 0x0000), and neighbours.
    const targets = [0x0000, 0x0001, 0x00ff, 0x0100, 0xfeff, 0xff00, 0xfffe];
    let corners = 0;
    const p = Buffer.alloc(20);
    for (let ttl = 2; ttl <= 255; ttl++) {
      for (const target of targets) {
        p.fill(0);
        p[0] = 0x45;
        p[8] = ttl;
        p[9] = 6;
        const base = ~internetChecksum(p, 0, 20) & 0xffff; // one's complement sum with word 0
        let w = (~target & 0xffff) + (~base & 0xffff);
        w = (w & 0xffff) + (w >>> 16);
        p.writeUInt16BE(w & 0xffff, 12);
        if (internetChecksum(p, 0, 20) !== target) continue;
        corners++;
        p.writeUInt16BE(target, 10);
        decrementTTL(p, 0);
        const patched = p.readUInt16BE(10);
        p.writeUInt16BE(0, 10);
        expect(patched).toBe(internetChecksum(p, 0, 20));
        p.writeUInt16BE(patched, 10);
        expect(internetChecksum(p, 0, 20)).toBe(0);
      }
    }
    expect(corners).toBeGreaterThan(254 * 5);
  });

  it('keeps a checksum written as 0xFFFF (the other zero) valid', () => {
    // A sender may store -0 instead of +0; the result must still verify.
    const p = Buffer.alloc(20);
    p[0] = 0x45;
    p[8] = 10;
    p[9] = 17;
    p.writeUInt16BE(0, 10);
    // Choose src so that the checksum computes to 0x0000, then store it as 0xFFFF.
    for (let w = 0; w <= 0xffff; w++) {
      p.writeUInt16BE(w, 12);
      p.writeUInt16BE(0, 10);
      if (internetChecksum(p, 0, 20) === 0) break;
    }
    expect(internetChecksum(p, 0, 20)).toBe(0);
    p.writeUInt16BE(0xffff, 10);
    expect(internetChecksum(p, 0, 20)).toBe(0);
    decrementTTL(p, 0);
    expect(p[8]).toBe(9);
    expect(internetChecksum(p, 0, 20)).toBe(0);
  });

  it('works on a header at an offset', () => {
    const p = ipPacket({ ttl: 2 });
    const big = Buffer.concat([Buffer.alloc(3), p]);
    decrementTTL(big, 3);
    expect(big[3 + 8]).toBe(1);
    expect(internetChecksum(big, 3, 20)).toBe(0);
  });
});

describe('ICMP error builders', () => {
  const ours = parseIPv4('10.244.1.0');

  function checkCommon(icmp: Buffer, offending: Buffer, type: number, code: number): void {
    const headerLen = (offending[0]! & 0x0f) * 4;
    const quoteLen = headerLen + Math.min(8, offending.readUInt16BE(2) - headerLen);
    expect(icmp.length).toBe(20 + 8 + quoteLen);
    expect(icmp[0]).toBe(0x45);
    expect(icmp.readUInt16BE(2)).toBe(icmp.length);
    expect(icmp.readUInt16BE(4)).toBe(0); // ID 0
    expect(icmp.readUInt16BE(6)).toBe(0); // DF clear, no fragment
    expect(icmp[8]).toBe(64);
    expect(icmp[9]).toBe(1);
    expect(icmp.readUInt32BE(12)).toBe(ours);
    expect(icmp.readUInt32BE(16)).toBe(offending.readUInt32BE(12));
    expect(internetChecksum(icmp, 0, 20)).toBe(0);
    expect(icmp[20]).toBe(type);
    expect(icmp[21]).toBe(code);
    expect(internetChecksum(icmp, 20, icmp.length - 20)).toBe(0);
    expect(icmp.subarray(28).equals(offending.subarray(0, quoteLen))).toBe(true);
    expect(validateIPv4(icmp, 0, icmp.length, true)).toBe('ok');
  }

  it('builds net-unreachable: type 3 code 0, header + 8 bytes quoted', () => {
    const p = icmpEcho({ src: '10.244.1.5', dst: '10.244.9.9' });
    const icmp = buildNetUnreachable(p, 0, ours);
    checkCommon(icmp, p, 3, 0);
    expect(icmp.readUInt32BE(24)).toBe(0);
    expect(icmp.length).toBe(20 + 8 + 20 + 8);
  });

  it('builds time-exceeded: type 11 code 0', () => {
    const p = ipPacket({ ttl: 1 });
    checkCommon(buildTimeExceeded(p, 0, ours), p, 11, 0);
  });

  it('builds frag-needed: type 3 code 4 with the next-hop MTU', () => {
    const p = ipPacket({ payload: Buffer.alloc(1500) });
    const icmp = buildFragNeeded(p, 0, 1472, ours);
    checkCommon(icmp, p, 3, 4);
    expect(icmp.readUInt16BE(24)).toBe(0);
    expect(icmp.readUInt16BE(26)).toBe(1472);
  });

  it('quotes options and fewer than 8 payload bytes when that is all there is', () => {
    const p = ipPacket({ options: [1, 1, 1, 0], payload: [9, 9, 9] });
    const icmp = buildNetUnreachable(p, 0, ours);
    checkCommon(icmp, p, 3, 0);
    expect(icmp.length).toBe(20 + 8 + 24 + 3);
  });

  it('quotes only up to the total length, not trailing buffer bytes, at an offset', () => {
    const p = ipPacket({ payload: [1, 2, 3] });
    const big = Buffer.concat([Buffer.alloc(5, 0x77), p, Buffer.alloc(20, 0x77)]);
    const icmp = buildTimeExceeded(big, 5, ours);
    checkCommon(icmp, p, 11, 0);
  });

  describe('suppression rules (icmpErrorAllowed)', () => {
    it('answers ordinary packets and ICMP echo requests', () => {
      expect(icmpErrorAllowed(ipPacket(), 0)).toBe(true);
      expect(icmpErrorAllowed(icmpEcho(), 0)).toBe(true);
    });

    it('never answers an ICMP error message (types 3, 4, 5, 11, 12)', () => {
      for (const type of [3, 4, 5, 11, 12]) {
        const p = ipPacket({ protocol: 1, payload: [type, 0, 0, 0, 0, 0, 0, 0] });
        expect(icmpErrorAllowed(p, 0)).toBe(false);
      }
      for (const type of [0, 8, 13, 14]) {
        const p = ipPacket({ protocol: 1, payload: [type, 0, 0, 0, 0, 0, 0, 0] });
        expect(icmpErrorAllowed(p, 0)).toBe(true);
      }
    });

    it('never answers an ICMP packet without room for a type', () => {
      expect(icmpErrorAllowed(ipPacket({ protocol: 1, payload: [] }), 0)).toBe(false);
    });

    it('never answers a non-first fragment, but does answer a first fragment', () => {
      expect(icmpErrorAllowed(ipPacket({ flagsFragment: 0x0001 }), 0)).toBe(false);
      expect(icmpErrorAllowed(ipPacket({ flagsFragment: 0x2000 | 185 }), 0)).toBe(false);
      expect(icmpErrorAllowed(ipPacket({ flagsFragment: 0x2000 }), 0)).toBe(true);
    });

    it('never answers 0.0.0.0, multicast or broadcast sources', () => {
      for (const src of ['0.0.0.0', '224.0.0.1', '239.255.255.250', '255.255.255.255']) {
        expect(icmpErrorAllowed(ipPacket({ src }), 0)).toBe(false);
      }
    });

    it('never answers packets sent to multicast or broadcast destinations', () => {
      for (const dst of ['224.0.0.251', '239.1.2.3', '255.255.255.255']) {
        expect(icmpErrorAllowed(ipPacket({ dst }), 0)).toBe(false);
      }
      expect(icmpErrorAllowed(ipPacket({ dst: '223.255.255.255' }), 0)).toBe(true);
    });
  });

  it('hasDF reads the Don\'t Fragment bit', () => {
    expect(hasDF(ipPacket({ flagsFragment: 0x4000 }), 0)).toBe(true);
    expect(hasDF(ipPacket({ flagsFragment: 0 }), 0)).toBe(false);
  });
});

describe('TokenBucket', () => {
  it('allows a burst, then the refill rate, never more than the burst', () => {
    let now = 1000;
    const bucket = new TokenBucket(100, 100, () => now);
    let granted = 0;
    for (let i = 0; i < 150; i++) if (bucket.take()) granted++;
    expect(granted).toBe(100);
    expect(bucket.take()).toBe(false);

    now += 50; // 5 tokens
    granted = 0;
    for (let i = 0; i < 20; i++) if (bucket.take()) granted++;
    expect(granted).toBe(5);

    now += 60_000; // refills to the burst, not beyond
    granted = 0;
    for (let i = 0; i < 500; i++) if (bucket.take()) granted++;
    expect(granted).toBe(100);
  });

  it('accrues fractional tokens across calls', () => {
    let now = 0;
    const bucket = new TokenBucket(100, 1, () => now);
    expect(bucket.take()).toBe(true);
    let granted = 0;
    for (let i = 0; i < 100; i++) {
      now += 1; // 0.1 token per call
      if (bucket.take()) granted++;
    }
    expect(granted).toBe(10);
  });

  it('survives a clock that steps backwards', () => {
    let now = 5000;
    const bucket = new TokenBucket(10, 2, () => now);
    expect(bucket.take()).toBe(true);
    expect(bucket.take()).toBe(true);
    now = 1000;
    expect(bucket.take()).toBe(false);
    now = 1100;
    expect(bucket.take()).toBe(true);
  });

  it('rejects a nonsensical configuration', () => {
    expect(() => new TokenBucket(0, 10)).toThrow(/invalid token bucket/);
    expect(() => new TokenBucket(10, 0)).toThrow(/invalid token bucket/);
  });
});
