import pino from 'pino';

/** The service's structured logger. Child loggers carry `wabaId` / `messageId` wherever known. */
export type Logger = pino.Logger;

/** One root logger per process; JSON lines on stdout. */
export function createLogger(level: string = 'info', name = 'coexist-relay'): Logger {
  return pino({ name, level, base: { svc: name } });
}
