import { AsyncLocalStorage } from 'node:async_hooks';
import pretty from 'pino-pretty';
import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

export type LogFormat = 'auto' | 'pretty' | 'json';

export interface LoggerOptions {
  /** auto: pretty when stdout is a terminal (a person reads it), JSON lines otherwise (a collector does). */
  format?: LogFormat;
  /** Where lines go (tests); default stdout. */
  destination?: DestinationStream;
}

/**
 * What never reaches a log line: credentials in request headers and in objects that carry settings.
 * Request lines carry only what Fastify's serializers pick (method, url, host, remote address; status
 * and time), never whole requests; errors of node-postgres go through db/faults.ts' dbErrorFields.
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  '*.adminToken',
  '*.password',
  '*.token',
  '*.bearerToken',
  '*.connectionString',
];

/** JSON lines for machines, or one-line human logs; a request's lines carry its reqId (server.ts). */
export function createLogger(level: string, opts: LoggerOptions = {}): Logger {
  const format = opts.format ?? 'json';
  const human = format === 'pretty' || (format === 'auto' && process.stdout.isTTY === true);
  const options = { level, redact: { paths: REDACT_PATHS, censor: '[redacted]' } };
  if (opts.destination && !human) return pino(options, opts.destination);
  if (!human) return pino(options);
  // In-process and synchronous (no transport worker): lines keep their order with other stdout writes
  // and nothing is lost on exit; a terminal is slow enough that this costs nothing measurable.
  const stream = pretty({
    colorize: opts.destination ? false : pretty.isColorSupported,
    singleLine: true,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname',
    sync: true,
    ...(opts.destination ? { destination: opts.destination } : {}),
  });
  return pino(options, stream);
}

const requestLog = new AsyncLocalStorage<Logger>();

/** Runs a request's work with its logger (Fastify's request.log, which carries reqId) as the current one. */
export function runWithLog<T>(log: Logger, fn: () => T): T {
  return requestLog.run(log, fn);
}

/** The current request's logger, for code that logs on a request's behalf without being handed one. */
export function currentLog(fallback: Logger): Logger {
  return requestLog.getStore() ?? fallback;
}
