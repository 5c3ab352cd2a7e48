import { ConfigError, loadConfig, type Config } from './config';
import { createLogger, type Logger } from './logger';

/**
 * Shared start-up for the entry points: validated config (a bad variable stops the process with a
 * message naming it), the logger, and clean shutdown on SIGINT / SIGTERM.
 */
export function boot(name: string): { config: Config; logger: Logger } {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${name}: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  return { config, logger: createLogger(config.logLevel, name) };
}

/**
 * A repeat of the shutdown signal within this window is the same Ctrl-C arriving twice: the
 * terminal signals the whole process group and a parent (tsx's CLI, npm) relays it as well.
 */
const DUPLICATE_SIGNAL_MS = 5_000;

/**
 * Runs `stop` once, on the first SIGINT or SIGTERM, then exits 0 (1 when `stop` rejects, logged).
 * `stop` must be bounded in time. The handlers stay installed while stopping, so a relayed copy of
 * the signal cannot kill the process halfway (Node's default once no handler is left); a second
 * signal sent on purpose (after DUPLICATE_SIGNAL_MS) exits 130 at once without waiting.
 */
export function onShutdown(logger: Logger, stop: () => Promise<void>): void {
  let firstAt: number | undefined;
  const handler = (signal: NodeJS.Signals): void => {
    if (firstAt !== undefined) {
      if (Date.now() - firstAt < DUPLICATE_SIGNAL_MS) return;
      logger.warn({ signal }, 'second signal: exiting without waiting for the shutdown');
      process.exit(130);
    }
    firstAt = Date.now();
    logger.info({ signal }, 'shutting down');
    stop().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}
