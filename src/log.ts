// pino logger shared by the agent. JSON lines to stderr (stdout stays free for command output).
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string = process.env.FELT_LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base: { name: 'felt' } }, pino.destination({ fd: 2, sync: true }));
}
