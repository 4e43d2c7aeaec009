/**
 * Every setting of the service, read from the environment and validated once at start-up.
 * Error messages name the setting, never its value (values may be secrets).
 */
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const bool = z.enum(['true', 'false', '1', '0', 'yes', 'no']).transform((v) => v === 'true' || v === '1' || v === 'yes');
const list = z.string().transform((s) =>
  s
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean),
);

const schema = z.object({
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// or postgresql:// URL')
    .optional(),
  DATABASE_POOL_SIZE: int(1, 200).default(10),
  PORT: int(0, 65535).default(4000),
  HOST: z.string().min(1).default('127.0.0.1'),
  ADMIN_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  DATA_DIR: z.string().min(1).default('./data'),
  PGLITE_PSQL_PORT: int(0, 65535).default(54320),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  NODE_ENV: z.string().default('development'),
  GRAPHQL_INTROSPECTION: bool.optional(),
  GRAPHQL_MAX_DEPTH: int(1, 100).default(12),
  GRAPHQL_MAX_ALIASES: int(1, 1000).default(30),
  GRAPHQL_MAX_COST: int(1, 1_000_000).default(20_000),
  HTTP_BODY_LIMIT_BYTES: int(1024, 1024 * 1024 * 1024).default(32 * 1024 * 1024),
  EMBEDDING_MODEL_DIR: z.string().min(1).optional(),
  EMBEDDING_PROVIDER: z.enum(['auto', 'cuda', 'webgpu', 'cpu']).default('auto'),
  EMBEDDING_WORKERS: int(1, 64).default(1),
  EMBEDDING_THREADS: int(1, 256).default(Math.max(1, os.availableParallelism())),
  EMBEDDING_MAX_BATCH: int(1, 256).default(16),
  EMBEDDING_MAX_WAIT_MS: int(0, 1000).default(5),
  EMBEDDING_VARIANT: z.string().min(1).default('auto'), // auto: int8 on CPU, fp16 on CUDA where present (docs/embedding.md)
  MODEL_AUTO_FETCH: bool.default(true),
  IMAGE_MAX_BYTES: int(1024, 512 * 1024 * 1024).default(20 * 1024 * 1024),
  IMAGE_MAX_PIXELS: int(1, 1_000_000_000).default(40_000_000),
  IMAGE_FETCH_TIMEOUT_MS: int(100, 600_000).default(15_000),
  IMAGE_FETCH_CONNECT_TIMEOUT_MS: int(100, 600_000).default(5_000),
  IMAGE_FETCH_MAX_REDIRECTS: int(0, 20).default(5),
  IMAGE_FETCH_ALLOWED_PRIVATE_HOSTS: list.default([]),
  JOBS_ENABLED: bool.default(true),
  REINDEX_BATCH_SIZE: int(1, 10_000).default(256),
  REINDEX_THROTTLE_MS: int(0, 60_000).default(0),
  REINDEX_LEASE_SECONDS: int(1, 3600).default(60),
  JOBS_POLL_INTERVAL_MS: int(500, 60_000).default(1000),
});

export type Env = z.infer<typeof schema>;

export interface Config {
  env: Env;
  production: boolean;
  database: { kind: 'postgres'; url: string; poolSize: number } | { kind: 'pglite'; dataDir: string; psqlPort: number };
  http: { host: string; port: number; bodyLimit: number };
  adminToken: string | undefined;
  logLevel: Env['LOG_LEVEL'];
  graphql: { introspection: boolean; maxDepth: number; maxAliases: number; maxCost: number };
  dataDir: string;
  embedding: {
    /** Explicit model directory; unset: the default model in the cache, if it is there. */
    modelDir: string | undefined;
    provider: Env['EMBEDDING_PROVIDER'];
    workers: number;
    intraOpThreads: number;
    maxBatch: number;
    maxWaitMs: number;
    variant: string | undefined;
    /** Fetch the default model from the hub when none is configured or cached. */
    autoFetch: boolean;
  };
  images: {
    maxBytes: number;
    maxPixels: number;
    fetch: { totalTimeoutMs: number; connectTimeoutMs: number; maxRedirects: number; allowedPrivateHosts: string[] };
  };
  /** Reindex/import jobs on the pg-boss queue (docs/reindex.md). */
  jobs: { enabled: boolean; batchSize: number; throttleMs: number; leaseSeconds: number; pollIntervalMs: number };
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Parses the environment; throws ConfigError listing each bad setting by name. */
export function loadConfig(source: NodeJS.ProcessEnv = process.env): Config {
  const raw = Object.fromEntries(
    Object.keys(schema.shape).flatMap((k) => (source[k] === undefined || source[k] === '' ? [] : [[k, source[k]]])),
  );
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`Invalid configuration:\n${lines.join('\n')}`);
  }
  const env = parsed.data;
  const production = env.NODE_ENV === 'production';
  const dataDir = path.resolve(env.DATA_DIR);
  return {
    env,
    production,
    database: env.DATABASE_URL
      ? { kind: 'postgres', url: env.DATABASE_URL, poolSize: env.DATABASE_POOL_SIZE }
      : { kind: 'pglite', dataDir: path.join(dataDir, 'pglite'), psqlPort: env.PGLITE_PSQL_PORT },
    http: { host: env.HOST, port: env.PORT, bodyLimit: env.HTTP_BODY_LIMIT_BYTES },
    adminToken: env.ADMIN_TOKEN,
    logLevel: env.LOG_LEVEL,
    graphql: {
      introspection: env.GRAPHQL_INTROSPECTION ?? !production,
      maxDepth: env.GRAPHQL_MAX_DEPTH,
      maxAliases: env.GRAPHQL_MAX_ALIASES,
      maxCost: env.GRAPHQL_MAX_COST,
    },
    dataDir,
    embedding: {
      modelDir: env.EMBEDDING_MODEL_DIR ? path.resolve(env.EMBEDDING_MODEL_DIR) : undefined,
      provider: env.EMBEDDING_PROVIDER,
      workers: env.EMBEDDING_WORKERS,
      intraOpThreads: env.EMBEDDING_THREADS,
      maxBatch: env.EMBEDDING_MAX_BATCH,
      maxWaitMs: env.EMBEDDING_MAX_WAIT_MS,
      variant: env.EMBEDDING_VARIANT,
      autoFetch: env.MODEL_AUTO_FETCH,
    },
    images: {
      maxBytes: env.IMAGE_MAX_BYTES,
      maxPixels: env.IMAGE_MAX_PIXELS,
      fetch: {
        totalTimeoutMs: env.IMAGE_FETCH_TIMEOUT_MS,
        connectTimeoutMs: env.IMAGE_FETCH_CONNECT_TIMEOUT_MS,
        maxRedirects: env.IMAGE_FETCH_MAX_REDIRECTS,
        allowedPrivateHosts: env.IMAGE_FETCH_ALLOWED_PRIVATE_HOSTS,
      },
    },
    jobs: {
      enabled: env.JOBS_ENABLED,
      batchSize: env.REINDEX_BATCH_SIZE,
      throttleMs: env.REINDEX_THROTTLE_MS,
      leaseSeconds: env.REINDEX_LEASE_SECONDS,
      pollIntervalMs: env.JOBS_POLL_INTERVAL_MS,
    },
  };
}

/** For command-line entries: the config, or null after writing the ConfigError to stderr (exit code 2). */
export function loadConfigOrReport(source: NodeJS.ProcessEnv = process.env): Config | null {
  try {
    return loadConfig(source);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      return null;
    }
    throw err;
  }
}
