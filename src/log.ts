import { pino, type Logger } from 'pino';

export type { Logger };

/** Structured JSON logs; secrets that may appear in request headers are redacted. */
export function createLogger(level: string): Logger {
  return pino({
    level,
    redact: { paths: ['req.headers.authorization', '*.adminToken', '*.password'], censor: '[redacted]' },
  });
}
