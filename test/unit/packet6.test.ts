// IPv6 packet handling (src/datapath/packet6.ts): validation, the extension-header walk, the
// ICMPv6 suppression rules and the error builders, checksums verified independently.
import { describe, expect, it } from 'vitest';
import { ipv6ToBytes, parseIPv6 } from '../../src/net/ip6.js';
import {
  buildIcmp6NoRoute,
  buildIcmp6PacketTooBig,
  buildIcmp6TimeExceeded,
  decrementHopLimit,
  icmp6ErrorAllowed,
  validateIPv6,
  walkIPv6,
} from '../../src/datapath/packet6.js';
import { fragmentBody, icmp6ChecksumOk, ip6Packet, PADN6 } from '../support/packets6.js';

const TUNNEL6 = ipv6ToBytes(parseIPv6('fd00:10:244:1::'));

function walk(p: Buffer): number {
  return walkIPv6(p, 0, p.length);
}

describe('validateIPv6', () => {
  it('accepts a well-formed packet, at an offset, ignoring trailing bytes', () => {
    const p = ip6Packet();
    expect(validateIPv6(p, 0, p.length)).toBe('ok');
    const framed = Buffer.concat([Buffer.alloc(3), p, Buffer.alloc(9)]);
    expect(validateIPv6(framed, 3, p.length + 9)).toBe('ok');
  });

  it('drops fewer than 40 bytes, or a payload length beyond the bytes read, as truncated', () => {
    const p = ip6Packet();
    expect(validateIPv6(p, 0, 39)).toBe('truncated');
    expect(validateIPv6(p, 0, p.length - 1)).toBe('truncated');
    expect(validateIPv6(p, 0, p.length + 1)).toBe('truncated'); // runs past the buffer
  });

  it('drops other versions as not-ip', () => {
    const p = ip6Packet();
    for (const v of [0, 4, 5, 7, 15]) {
      p[0] = (v << 4) | (p[0]! & 0x0f);
      expect(validateIPv6(p, 0, p.length)).toBe('not-ip');
    }
  });

  it('drops a jumbogram (payload length 0 with Hop-by-Hop) as malformed; payload length 0 otherwise is fine', () => {
    const p = ip6Packet({ payload: Buffer.alloc(0), proto: 59 });
    expect(validateIPv6(p, 0, 40)).toBe('ok');
    p[6] = 0;
    expect(validateIPv6(p, 0, 40)).toBe('malformed');
  });

  it('never throws on random bytes', () => {
    const buf = Buffer.alloc(300);
    for (let i = 0; i < 5000; i++) {
      for (let j = 0; j < buf.length; j++) buf[j] = (Math.random() * 256) | 0;
      buf[0] = 0x60 | (buf[0]! & 0x0f);
      const len = (Math.random() * 300) | 0;
      if (validateIPv6(buf, 0, len) === 'ok') {
        const w = walkIPv6(buf, 0, 40 + buf.readUInt16BE(4));
        expect(() => icmp6ErrorAllowed(buf, 0, w)).not.toThrow();
      }
    }
  });
});

describe('walkIPv6 (extension headers)', () => {
  it('finds the upper layer directly after the fixed header', () => {
    expect(walk(ip6Packet({ proto: 6 }))).toBe(40 * 256 + 6);
  });

  it('walks Hop-by-Hop, Routing and Destination Options', () => {
    const p = ip6Packet({ proto: 58, ext: [[0, PADN6], [43, Buffer.from([0, 0, 0, 0, 0, 0])], [60, Buffer.concat([PADN6, Buffer.alloc(8)])]] });
    expect(walk(p)).toBe((40 + 8 + 8 + 16) * 256 + 58);
  });

  it('stops at a Fragment header without looking past it', () => {
    const p = ip6Packet({ proto: 6, ext: [[60, PADN6], [44, fragmentBody(0, true)], [60, PADN6]] });
    expect(walk(p)).toBe(48 * 256 + 44);
  });

  it('allows 8 extension headers, not 9', () => {
    const eight = ip6Packet({ ext: [[0, PADN6], ...Array.from({ length: 7 }, (): [number, Buffer] => [60, PADN6])] });
    expect(walk(eight)).toBe((40 + 64) * 256 + 17);
    const nine = ip6Packet({ ext: [[0, PADN6], ...Array.from({ length: 8 }, (): [number, Buffer] => [60, PADN6])] });
    expect(walk(nine)).toBe(-1);
  });

  it('rejects a header ending past the first 256 bytes, allows one ending at 256', () => {
    const at256 = ip6Packet({ ext: [[60, Buffer.concat([PADN6, Buffer.alloc(208)])]] }); // 40 + 216
    expect(walk(at256)).toBe(256 * 256 + 17);
    const past = ip6Packet({ ext: [[60, Buffer.concat([PADN6, Buffer.alloc(216)])]] }); // 40 + 224
    expect(walk(past)).toBe(-1);
  });

  it('rejects a header running past the packet (truncated chain)', () => {
    const p = ip6Packet({ payload: Buffer.alloc(0), ext: [[60, Buffer.concat([PADN6, Buffer.alloc(8)])]] });
    expect(walkIPv6(p, 0, p.length - 1)).toBe(-1);
    expect(walkIPv6(p, 0, 44)).toBe(-1); // not even the 2-byte start of the header
    const fragCut = ip6Packet({ payload: Buffer.alloc(0), ext: [[44, fragmentBody(0, false)]] });
    expect(walkIPv6(fragCut, 0, 47)).toBe(-1);
  });

  it('rejects a Hop-by-Hop header anywhere but first', () => {
    expect(walk(ip6Packet({ ext: [[60, PADN6], [0, PADN6]] }))).toBe(-1);
  });
});

describe('ICMPv6 suppression (icmp6ErrorAllowed)', () => {
  const allowed = (p: Buffer) => icmp6ErrorAllowed(p, 0, walk(p));
  const icmp6 = (type: number) => Buffer.from([type, 0, 0, 0, 0, 0, 0, 0]);

  it('answers ordinary packets and ICMPv6 informational messages (echo request)', () => {
    expect(allowed(ip6Packet())).toBe(true);
    expect(allowed(ip6Packet({ proto: 58, payload: icmp6(128) }))).toBe(true);
  });

  it('never answers an ICMPv6 error message (types < 128), even behind extension headers', () => {
    for (const type of [1, 2, 3, 4, 127]) {
      expect(allowed(ip6Packet({ proto: 58, payload: icmp6(type) }))).toBe(false);
      expect(allowed(ip6Packet({ proto: 58, payload: icmp6(type), ext: [[0, PADN6], [60, PADN6]] }))).toBe(false);
    }
  });

  it('never answers an ICMPv6 packet without room for a type', () => {
    expect(allowed(ip6Packet({ proto: 58, payload: Buffer.alloc(0) }))).toBe(false);
  });

  it('never answers a non-first fragment or the first fragment of an ICMPv6 message; answers other first fragments', () => {
    expect(allowed(ip6Packet({ proto: 6, ext: [[44, fragmentBody(0, true)]] }))).toBe(true);
    expect(allowed(ip6Packet({ proto: 6, ext: [[44, fragmentBody(185, false)]] }))).toBe(false);
    expect(allowed(ip6Packet({ proto: 58, payload: icmp6(128), ext: [[44, fragmentBody(0, true)]] }))).toBe(false);
  });

  it('never answers :: or multicast sources, or multicast destinations', () => {
    expect(allowed(ip6Packet({ src: '::' }))).toBe(false);
    expect(allowed(ip6Packet({ src: 'ff02::1' }))).toBe(false);
    expect(allowed(ip6Packet({ dst: 'ff02::2' }))).toBe(false);
    expect(icmp6ErrorAllowed(ip6Packet(), 0, -1)).toBe(false);
  });
});

describe('ICMPv6 error builders', () => {
  function check(out: Buffer, offending: Buffer, type: number, rest: number): void {
    expect(out[0]! >> 4).toBe(6);
    expect(out.readUInt16BE(4)).toBe(out.length - 40);
    expect(out[6]).toBe(58);
    expect(out[7]).toBe(64);
    expect(out.subarray(8, 24)).toEqual(Buffer.from(TUNNEL6));
    expect(out.subarray(24, 40)).toEqual(offending.subarray(8, 24));
    expect(out[40]).toBe(type);
    expect(out[41]).toBe(0);
    expect(out.readUInt32BE(44)).toBe(rest);
    expect(icmp6ChecksumOk(out)).toBe(true);
  }

  it('builds destination unreachable (type 1 code 0) quoting the whole small packet', () => {
    const p = ip6Packet();
    const out = buildIcmp6NoRoute(p, 0, TUNNEL6);
    check(out, p, 1, 0);
    expect(out.subarray(48)).toEqual(p);
  });

  it('builds time exceeded (type 3 code 0)', () => {
    const p = ip6Packet({ hopLimit: 1 });
    check(buildIcmp6TimeExceeded(p, 0, TUNNEL6), p, 3, 0);
  });

  it('builds Packet Too Big (type 2) with the MTU, kept within 1280 bytes', () => {
    const p = ip6Packet({ payload: Buffer.alloc(1500 - 40, 0xab) });
    const out = buildIcmp6PacketTooBig(p, 0, 1432, TUNNEL6);
    check(out, p, 2, 1432);
    expect(out.length).toBe(1280);
    expect(out.subarray(48)).toEqual(p.subarray(0, 1232));
  });

  it('quotes only up to the payload length, not trailing bytes, at an offset', () => {
    const p = ip6Packet();
    const framed = Buffer.concat([Buffer.alloc(5, 0xee), p, Buffer.alloc(7, 0xee)]);
    const out = buildIcmp6NoRoute(framed, 5, TUNNEL6);
    expect(out.subarray(48)).toEqual(p);
    expect(icmp6ChecksumOk(out)).toBe(true);
  });

  it('has a checksum that the independent check rejects once a byte changes (the check can fail)', () => {
    const out = buildIcmp6NoRoute(ip6Packet(), 0, TUNNEL6);
    out[60] = out[60]! ^ 0x01;
    expect(icmp6ChecksumOk(out)).toBe(false);
  });
});

it('decrementHopLimit takes one off the hop limit and touches nothing else', () => {
  const p = ip6Packet({ hopLimit: 2 });
  const before = Buffer.from(p);
  decrementHopLimit(p, 0);
  expect(p[7]).toBe(1);
  p[7] = 2;
  expect(p).toEqual(before);
});
