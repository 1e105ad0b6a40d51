// The reference model's half of the native fuzz run: reads the bursts `fuzz --emit` writes
// (each a u32 big-endian length and the records of native/fuzz/fuzz.h) on stdin and writes them
// to stdout with the model's verdicts added (scripts/fuzz/vectors.ts), for `fuzz --vectors -`:
//
//   fuzz --emit --count N --seed S | node dist/scripts/fuzz-vectors.js | fuzz --vectors - --seed S
//
// (scripts/fuzz.sh runs this pipeline.) Exit status 2 on a stream cut inside a burst.
import { once } from 'node:events';
import { VectorWriter } from './fuzz/vectors.js';

async function main(): Promise<number> {
  const writer = new VectorWriter();
  let pending: Buffer = Buffer.alloc(0);
  let out: Buffer[] = [];
  let outBytes = 0;
  const drain = async (): Promise<void> => {
    if (out.length === 0) return;
    const chunk = Buffer.concat(out, outBytes);
    out = [];
    outBytes = 0;
    if (!process.stdout.write(chunk)) await once(process.stdout, 'drain');
  };
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    let off = 0;
    while (off + 4 <= pending.length) {
      const n = pending.readUInt32BE(off);
      if (off + 4 + n > pending.length) break;
      const pieces = writer.annotate(pending.subarray(off + 4, off + 4 + n));
      const size = pieces.reduce((a, p) => a + p.length, 0);
      const len = Buffer.alloc(4);
      len.writeUInt32BE(size);
      out.push(len, ...pieces.map((p) => Buffer.from(p.buffer, p.byteOffset, p.length)));
      outBytes += 4 + size;
      off += 4 + n;
    }
    // Copy what is left: the chunk's memory may be reused once this loop moves on.
    pending = Buffer.from(pending.subarray(off));
    await drain();
  }
  await drain();
  if (pending.length) {
    process.stderr.write(`fuzz-vectors: the input ends inside a burst (${pending.length} bytes left)\n`);
    return 2;
  }
  return 0;
}

process.exitCode = await main();
