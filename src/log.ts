// pino logger shared by the agent, and the warn-once filter. JSON lines to stderr (stdout stays
// free for command output).
import { LRUCache } from 'lru-cache';
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string = process.env.FELT_LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base: { name: 'felt' } }, pino.destination({ fd: 2, sync: true }));
}

/**
 * Remembers which problems were already logged, so a bad value repeated on every relist is logged
 * once. Bounded: the least recently seen keys are forgotten first (and may then be logged again).
 */
export class LoggedOnce {
  private readonly seen: LRUCache<string, true>;

  constructor(max = 10_000) {
    this.seen = new LRUCache({ max });
  }

  /** True the first time `key` is seen (log then); false while it is remembered. */
  first(key: string): boolean {
    if (this.seen.get(key)) return false;
    this.seen.set(key, true);
    return true;
  }
}
