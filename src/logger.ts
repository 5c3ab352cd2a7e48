import pino from 'pino';

/** The service's structured logger. Child loggers carry `wabaId` / `messageId` wherever known. */
export type Logger = pino.Logger;

/**
 * Fields that hold secrets wherever they appear in a log object (top level or one level down):
 * a defence in depth, since nothing logs the config, headers or tokens on purpose. URIs in text
 * go through `redactUri` (src/util/redact.ts) instead.
 */
export const REDACTED_FIELDS = ['authorization', 'token', 'appSecret', 'appSecrets', 'apiKey', 'password', 'uri'];

/** One root logger per process; JSON lines on stdout. */
export function createLogger(
  level: string = 'info',
  name = 'coexist-relay',
  destination?: pino.DestinationStream,
): Logger {
  const paths = REDACTED_FIELDS.flatMap((f) => [f, `*.${f}`]);
  return pino({ name, level, base: { svc: name }, redact: { paths, censor: '[redacted]' } }, destination);
}
