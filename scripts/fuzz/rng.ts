// Seeded PRNG for the fuzzers (sfc32): the same seed gives the same run.
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  constructor(seed: number) {
    this.a = 0x9e3779b9;
    this.b = 0x243f6a88;
    this.c = 0xb7e15162;
    this.d = seed >>> 0;
    for (let i = 0; i < 16; i++) this.u32();
  }
  u32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t;
  }
  /** 0 <= r < n */
  int(n: number): number {
    return n <= 0 ? 0 : Math.floor((this.u32() / 0x100000000) * n);
  }
  chance(percent: number): boolean {
    return this.int(100) < percent;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  fill(buf: Uint8Array, start = 0, end = buf.length): void {
    let i = start;
    for (; i + 4 <= end; i += 4) {
      const r = this.u32();
      buf[i] = r & 0xff;
      buf[i + 1] = (r >>> 8) & 0xff;
      buf[i + 2] = (r >>> 16) & 0xff;
      buf[i + 3] = r >>> 24;
    }
    for (; i < end; i++) buf[i] = this.u32() & 0xff;
  }
}

