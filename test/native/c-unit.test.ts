// Runs the C unit tests of native/ (segmentation, GRO, checksums, routes, ICMP, fuzz) built with
// ASan/UBSan by native/test/run.sh. Needs a C compiler (cc).
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { expect, test } from 'vitest';

const script = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../native/test/run.sh');

test('native C unit tests pass under ASan/UBSan (needs cc)', async () => {
  const out = await new Promise<string>((resolve, reject) => {
    execFile(script, { timeout: 300_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${script}: ${err.message}\n${stdout}\n${stderr}`));
      else resolve(stdout);
    });
  });
  expect(out).toMatch(/\d+ passed, 0 failed/);
});
