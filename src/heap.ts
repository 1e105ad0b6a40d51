// After a burst of garbage (a 5,000-lease snapshot, its expiry look-ups), V8 keeps the grown heap
// for a long time because it sees plenty of headroom. One full collection a little later gives
// that memory back, so an agent with a big table settles near its live size.
import v8 from 'node:v8';
import vm from 'node:vm';

let collect: (() => void) | undefined;
let timer: NodeJS.Timeout | undefined;

function gcFunction(): (() => void) | undefined {
  if (!collect) {
    try {
      v8.setFlagsFromString('--expose-gc');
      collect = vm.runInNewContext('gc') as () => void;
    } catch {
      return undefined;
    }
  }
  return collect;
}

/** Runs one full garbage collection `delayMs` after the last call (a burst of calls makes one). */
export function collectGarbageSoon(delayMs = 3000): void {
  clearTimeout(timer);
  timer = setTimeout(() => {
    timer = undefined;
    gcFunction()?.();
  }, delayMs);
  timer.unref();
}
