// Packets waiting for one batched call (js engine): slices of a single Buffer, each with the peer it
// belongs to and, for sends, the peer's address word. Preallocated and reused, so queueing a packet
// allocates nothing.

/** Packets queued for one batched call at most; a longer reader batch is flushed in parts. */
export const QUEUE_CAPACITY = 1024;

export class OutQueue<P> {
  readonly desc: Uint32Array;
  readonly ok = new Uint8Array(QUEUE_CAPACITY);
  readonly owners: (P | undefined)[] = new Array(QUEUE_CAPACITY).fill(undefined);
  count = 0;
  buf: Buffer | undefined;

  /** 2 fields per entry (start, length) for TUN writes; 3 (start, length, address) for sends. */
  constructor(readonly fields: 2 | 3) {
    this.desc = new Uint32Array(QUEUE_CAPACITY * fields);
  }

  /** False when the packet cannot join (queue full, or a different Buffer): flush, then retry. */
  add(buf: Buffer, start: number, length: number, owner: P, address: number): boolean {
    if (this.count === QUEUE_CAPACITY || (this.buf !== undefined && this.buf !== buf)) return false;
    this.buf = buf;
    const i = this.count++;
    const d = i * this.fields;
    this.desc[d] = start;
    this.desc[d + 1] = length;
    if (this.fields === 3) this.desc[d + 2] = address;
    this.owners[i] = owner;
    return true;
  }

  clear(): void {
    this.count = 0;
    this.buf = undefined;
  }
}
