// Waiting and retrying, cancellable: every retry loop and back-off in felt goes through here, so a
// stop() (an aborted AbortSignal) ends any wait at once and no loop keeps its own timers.
import { setTimeout as delay } from 'node:timers/promises';
import { isPermanent } from './lease/types.js';

/**
 * Waits `ms`; resolves true when the time passed, false as soon as `signal` aborts (never
 * rejects, so loops just check the result). The timer keeps the process alive: a retry may be
 * all that is left to do.
 */
export async function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  if (signal?.aborted) return false;
  try {
    await delay(ms, undefined, { signal });
    return true;
  } catch {
    return false;
  }
}

/** Exponential back-off: min, 2*min, ... up to max, each with +-25% jitter so peers do not align. */
export class Backoff {
  private failures = 0;

  constructor(
    private readonly minMs: number,
    private readonly maxMs: number,
    private readonly jitter = true,
  ) {}

  /** The next delay (and counts one more failure). */
  next(): number {
    const base = Math.min(this.maxMs, this.minMs * 2 ** this.failures++);
    return this.jitter ? base * (0.75 + Math.random() / 2) : base;
  }

  /** Back to the shortest delay (after something worked). */
  reset(): void {
    this.failures = 0;
  }

  get count(): number {
    return this.failures;
  }
}

export interface RetryOptions {
  /** Says what is retried, in log lines ("could not <what>, retrying"). */
  what: string;
  /** Delay before attempt n+1 (1-based n). */
  delayMs: (attempt: number) => number;
  /** Give up (throw the last error) once this time (ms since epoch) is reached. Default: never. */
  deadline?: number;
  /** Stops the waiting: the last error is thrown at once. */
  signal?: AbortSignal;
  /** Errors not worth retrying (default: PermanentError and its subclasses). */
  permanent?: (err: unknown) => boolean;
  /** Told about each failure that will be retried. */
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
}

/**
 * Runs `step` until it succeeds. Throws the step's error as it is when the error is permanent,
 * the deadline would pass before the next attempt, or `signal` aborts.
 */
export async function retry<T>(step: (attempt: number) => Promise<T>, options: RetryOptions): Promise<T> {
  const permanent = options.permanent ?? isPermanent;
  for (let attempt = 1; ; attempt++) {
    try {
      return await step(attempt);
    } catch (err) {
      if (permanent(err) || options.signal?.aborted) throw err;
      let wait = options.delayMs(attempt);
      if (options.deadline !== undefined) {
        const left = options.deadline - Date.now();
        if (left <= 0) throw err;
        wait = Math.min(wait, left);
      }
      options.onRetry?.(err, attempt, wait);
      if (!(await sleep(wait, options.signal))) throw err;
    }
  }
}

/** The message of anything thrown. */
export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
