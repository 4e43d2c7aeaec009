/**
 * Every setting of the service, read from the environment and validated once at start-up.
 * Error messages name the setting, never its value (values may be secrets).
 *
 * Depends on nothing of the service (the folder rule: everything may read its settings, settings read
 * nothing back). Each setting and its default is written once, in the zod schema; the typed Config is
 * what configOf() makes of the parsed settings (inferred, not restated as interfaces).
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

// shared by the service's schema and modelFetchSettings()
const embeddingProvider = z.enum(['auto', 'cuda', 'webgpu', 'cpu']).default('auto');
const embeddingVariant = z.string().min(1).default('auto');

const schema = z.object({
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// or postgresql:// URL')
    .optional(),
  // Streaming replicas for search traffic (comma-separated; README "Read replicas"). Each gets a pool of
  // DATABASE_POOL_SIZE with the same timeouts.
  DATABASE_READ_URL: list
    .pipe(z.array(z.string().regex(/^postgres(ql)?:\/\//, 'must be postgres:// or postgresql:// URLs, comma-separated')).max(16))
    .optional(),
  DATABASE_POOL_SIZE: int(1, 200).default(10),
  PORT: int(0, 65535).default(4000),
  HOST: z.string().min(1).default('127.0.0.1'),
  ADMIN_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  DATA_DIR: z.string().min(1).default('./data'),
  PGLITE_PSQL_PORT: int(0, 65535).default(54320),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  // auto: one-line human logs when stdout is a terminal, JSON lines otherwise (README: Logs).
  LOG_FORMAT: z.enum(['auto', 'pretty', 'json']).default('auto'),
  METRICS_ENABLED: bool.default(true),
  // Unset: /metrics on the service's own port; set: on this port only (e.g. one not exposed publicly).
  METRICS_PORT: int(1, 65535).optional(),
  // /metrics on the public port needs this bearer token when set; in production, without METRICS_PORT or
  // this, /metrics is not served on the public port.
  METRICS_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  NODE_ENV: z.string().default('development'),
  GRAPHQL_INTROSPECTION: bool.optional(),
  // graphql-armor's own defaults (depth 6, 15 aliases, 1000 tokens) except its cost: the storefront's own
  // categories query (products(first: 500) { edges { node { category } } pageInfo { … } }) measures 10 188
  // in armor's cost model, over its default of 5000. The cost of k is the budget's (admission/budget.ts).
  GRAPHQL_MAX_DEPTH: int(1, 100).default(6),
  GRAPHQL_MAX_ALIASES: int(1, 1000).default(15),
  GRAPHQL_MAX_COST: int(1, 1_000_000).default(20_000),
  GRAPHQL_MAX_TOKENS: int(1, 1_000_000).default(1_000),
  HTTP_BODY_LIMIT_BYTES: int(1024, 1024 * 1024 * 1024).default(32 * 1024 * 1024),
  EMBEDDING_MODEL_DIR: z.string().min(1).optional(),
  EMBEDDING_PROVIDER: embeddingProvider,
  EMBEDDING_WORKERS: int(1, 64).default(1),
  EMBEDDING_THREADS: int(1, 256).default(Math.max(1, os.availableParallelism())),
  EMBEDDING_MAX_BATCH: int(1, 256).default(16),
  EMBEDDING_MAX_WAIT_MS: int(0, 1000).default(5),
  EMBEDDING_VARIANT: embeddingVariant, // auto: 8-bit on CPU, fp16 on CUDA where present (docs/embedding.md)
  // The model's calibration for matchProbability, where its directory does not say it (src/embedding/calibration.ts)
  EMBEDDING_LOGIT_SCALE: z.coerce.number().min(-50).max(50).optional(),
  EMBEDDING_LOGIT_BIAS: z.coerce.number().min(-1000).max(1000).optional(),
  MODEL_AUTO_FETCH: bool.default(true),
  IMAGE_MAX_BYTES: int(1024, 512 * 1024 * 1024).default(20 * 1024 * 1024),
  IMAGE_MAX_PIXELS: int(1, 1_000_000_000).default(40_000_000),
  // declared pixels of a baseline JPEG or lossy WebP, decoded shrunk to what the model needs (images/decode.ts)
  IMAGE_MAX_SCALABLE_PIXELS: int(1, 4_294_836_225).default(16384 * 16384),
  PRODUCT_MAX_IMAGES: int(1, 100).default(12),
  IMAGE_FETCH_TIMEOUT_MS: int(100, 600_000).default(15_000),
  IMAGE_FETCH_CONNECT_TIMEOUT_MS: int(100, 600_000).default(5_000),
  IMAGE_FETCH_MAX_REDIRECTS: int(0, 20).default(5),
  IMAGE_FETCH_ALLOWED_PRIVATE_HOSTS: list.default([]),
  JOBS_ENABLED: bool.default(true),
  REINDEX_BATCH_SIZE: int(1, 10_000).default(256),
  REINDEX_THROTTLE_MS: int(0, 60_000).default(0),
  REINDEX_LEASE_SECONDS: int(1, 3600).default(60),
  REINDEX_MAX_ATTEMPTS: int(1, 100).default(3),
  JOBS_POLL_INTERVAL_MS: int(500, 60_000).default(1000),
  // --- database faults and the embedded psql port (README: Configuration) ---
  DATABASE_STATEMENT_TIMEOUT_MS: int(0, 3_600_000).default(30_000),
  DATABASE_ADMIN_STATEMENT_TIMEOUT_MS: int(0, 86_400_000).default(3_600_000),
  DATABASE_CONNECT_TIMEOUT_MS: int(100, 60_000).default(2_000),
  PGLITE_PSQL_PASSWORD: z.string().min(16, 'must be at least 16 characters').optional(), // PSQL_MIN_PASSWORD_LENGTH (db/psql-port.ts)
  PGLITE_PSQL_TRUST: bool.default(false),
  PGLITE_PSQL_MAX_HOLD_MS: int(100, 86_400_000).default(60_000),
  PGLITE_PSQL_STATEMENT_TIMEOUT_MS: int(100, 86_400_000).default(10_000),
  // --- admission control, budgets, timeouts, rate limits (README: Configuration, "Public API limits") ---
  ADMISSION_FETCH_CONCURRENCY: int(1, 10_000).default(16),
  ADMISSION_FETCH_QUEUE: int(0, 100_000).default(32),
  ADMISSION_DECODE_CONCURRENCY: int(1, 256).default(Math.max(2, os.availableParallelism())),
  ADMISSION_DECODE_QUEUE: int(0, 100_000).default(16),
  ADMISSION_EMBED_CONCURRENCY: int(1, 1024).default(Math.max(4, 2 * os.availableParallelism())),
  ADMISSION_EMBED_QUEUE: int(0, 100_000).default(32),
  ADMISSION_QUERY_CONCURRENCY: int(1, 1024).default(Math.max(2, os.availableParallelism())),
  ADMISSION_QUERY_QUEUE: int(0, 100_000).default(32),
  ADMISSION_HEAVY_K: int(1, 1000).default(100),
  ADMISSION_HEAVY_QUERY_CONCURRENCY: int(1, 1024).default(1),
  ADMISSION_HEAVY_QUERY_QUEUE: int(0, 100_000).default(4),
  ADMISSION_MAX_WAIT_MS: int(1, 600_000).default(2_000),
  // The nice value of the threads that decode photos and run the model (admission/thread-priority.ts); 0 off.
  COMPUTE_THREAD_NICE: int(0, 19).default(10),
  BUDGET_SIMILARITY_FIELDS: int(1, 1000).default(3),
  BUDGET_SIMILARITY_K: int(1, 1_000_000).default(1_000),
  BUDGET_ADMIN_SIMILARITY_FIELDS: int(1, 1000).default(30),
  BUDGET_ADMIN_SIMILARITY_K: int(1, 1_000_000).default(30_000),
  BUDGET_PAGE_FIRST: int(1, 1_000_000).default(500),
  // Texts and photos one operation may embed: one classifyImage of 64 labels and its photo, and a few more.
  BUDGET_EMBEDDINGS: int(1, 100_000).default(72),
  BUDGET_ADMIN_EMBEDDINGS: int(1, 100_000).default(1_000),
  SEARCH_IMAGE_MAX_PIXELS: int(1, 1_000_000_000).default(16_000_000),
  GRAPHQL_REQUEST_TIMEOUT_MS: int(0, 3_600_000).default(20_000),
  HTTP_REQUEST_TIMEOUT_MS: int(0, 3_600_000).default(60_000),
  HTTP_CONNECTION_TIMEOUT_MS: int(0, 3_600_000).default(600_000),
  HTTP_KEEP_ALIVE_TIMEOUT_MS: int(1, 3_600_000).default(5_000),
  HTTP_HEADERS_TIMEOUT_MS: int(1, 3_600_000).default(10_000),
  HTTP_UPLOAD_MAX_BYTES: int(1024, 1024 * 1024 * 1024).default(64 * 1024 * 1024),
  IMAGE_FETCH_DNS_TIMEOUT_MS: int(50, 60_000).default(2_000),
  // The catalog's full-text language: a PostgreSQL text search configuration (english, german, french,
  // simple, …). Unset: whatever the database holds (migration 0009: english unless set when it ran).
  SEARCH_LANGUAGE: z
    .string()
    .transform((s) => s.trim().toLowerCase())
    .pipe(z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/, 'must name a text search configuration (e.g. english, german, simple)'))
    .optional(),
  // Per-category HNSW indexes (src/models/category-indexes.ts): categories with at least this many of a
  // model's vectors (0: none) and at most this share of them get an index of their own. 2 000 is where the
  // exact path stops for k = 10 (search/strategy.ts, exactThreshold), so every category the planner sends
  // to an HNSW walk has an index of its own up to 20 % of the vectors; at 10 % the whole-index walk
  // measured 9–14 ms at 1M rows.
  SEARCH_CATEGORY_INDEX_MIN_VECTORS: int(0, 1_000_000_000).default(2_000),
  SEARCH_CATEGORY_INDEX_MAX_SHARE: z.coerce.number().min(0).max(1).default(0.2),
  // Page cursors are signed (src/search/cursor.ts): the key (unset: one generated per process, so cursors
  // do not survive a restart or cross replicas), the key before a rotation (still accepted), their age limit.
  SEARCH_CURSOR_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
  SEARCH_CURSOR_PREVIOUS_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
  SEARCH_CURSOR_TTL_S: int(10, 7 * 86_400).default(3600),
  RATE_LIMIT_ENABLED: bool.default(true),
  // Generous per address: a storefront's backend may send every shopper's search from one address; the
  // budget and the admission gates bound what each request may cost.
  RATE_LIMIT_MAX: int(1, 10_000_000).default(5_000),
  RATE_LIMIT_WINDOW_MS: int(100, 86_400_000).default(10_000),
  // The query allowance per window (admission/allowance.ts), in budget units: an operation costs
  // 1 + Σk + Σfirst. 20 000 per 10 s lets one connection send 180 storefront-sized queries (k: 10) a
  // second, or two of the largest the anonymous budget accepts (3 × k: 333); one address, all its
  // connections' heavy operations (Σk over ADMISSION_HEAVY_K) together, ten times as much.
  RATE_LIMIT_POINTS: int(1, 1_000_000_000).default(20_000),
  RATE_LIMIT_ADDRESS_POINTS: int(1, 1_000_000_000).default(200_000),
  RATE_LIMIT_ADMIN_POINTS: int(1, 1_000_000_000).default(10_000_000),
  // What an operation refused for its size (parse, validation, budget) costs its client: a quarter of the
  // default allowance, so four per window. A storefront's queries are fixed in its code and never refused so;
  // a client that keeps sending them is broken or probing.
  RATE_LIMIT_REFUSAL_PENALTY: int(0, 1_000_000_000).default(5_000),
  // A 429 is held this long (at most until the client may retry) before it is sent, so a client that
  // resends at once cannot turn refusals into a flood; at most RATE_LIMIT_TARPIT_MAX_HELD are held at once.
  RATE_LIMIT_TARPIT_MS: int(0, 60_000).default(1_000),
  RATE_LIMIT_TARPIT_MAX_HELD: int(0, 1_000_000).default(1_024),
  // Fastify's trustProxy: behind a load balancer, the client's address comes from X-Forwarded-For only
  // from these hops (true, a hop count, or comma-separated addresses/CIDRs); unset: the socket's address.
  TRUST_PROXY: z.string().trim().min(1).optional(),
  ...hubShape(),
});

/** The model hub's settings (huggingface_hub's variables, read as it reads them), shared by the service's schema and hubSettings(). */
function hubShape() {
  return {
    HF_ENDPOINT: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }).optional(),
    HF_TOKEN: z.string().min(1).optional(),
    HUGGING_FACE_HUB_TOKEN: z.string().min(1).optional(),
    HF_HUB_CACHE: z.string().min(1).optional(),
    HUGGINGFACE_HUB_CACHE: z.string().min(1).optional(), // HF_HUB_CACHE's former name
    HF_HOME: z.string().min(1).optional(),
    XDG_CACHE_HOME: z.string().min(1).optional(),
    HF_HUB_OFFLINE: z.string().optional(),
  };
}

const DEFAULT_HUB = 'https://huggingface.co';

export interface HubSettings {
  /** Base URL of a Hugging Face Hub compatible server, without a trailing slash. */
  hubUrl: string;
  /** Sent as a bearer token (private or gated repositories). */
  token: string | undefined;
  /**
   * The Hugging Face hub cache, resolved as huggingface_hub resolves it: HF_HUB_CACHE, then its former name
   * HUGGINGFACE_HUB_CACHE, then HF_HOME/hub, then $XDG_CACHE_HOME/huggingface/hub, ~/.cache/huggingface/hub.
   */
  cacheDir: string;
  /** HF_HUB_OFFLINE=1 (huggingface_hub's switch): use what the caches hold, never ask the hub. */
  offline: boolean;
}

function hubOf(env: {
  HF_ENDPOINT?: string | undefined;
  HF_TOKEN?: string | undefined;
  HUGGING_FACE_HUB_TOKEN?: string | undefined;
  HF_HUB_CACHE?: string | undefined;
  HUGGINGFACE_HUB_CACHE?: string | undefined;
  HF_HOME?: string | undefined;
  XDG_CACHE_HOME?: string | undefined;
  HF_HUB_OFFLINE?: string | undefined;
}): HubSettings {
  const home = env.HF_HOME
    ? path.resolve(env.HF_HOME)
    : path.join(env.XDG_CACHE_HOME ? path.resolve(env.XDG_CACHE_HOME) : path.join(os.homedir(), '.cache'), 'huggingface');
  const cache = env.HF_HUB_CACHE ?? env.HUGGINGFACE_HUB_CACHE;
  return {
    hubUrl: (env.HF_ENDPOINT ?? DEFAULT_HUB).replace(/\/+$/, ''),
    token: env.HF_TOKEN ?? env.HUGGING_FACE_HUB_TOKEN,
    cacheDir: cache ? path.resolve(cache) : path.join(home, 'hub'),
    offline: ['1', 'true', 'yes', 'on'].includes((env.HF_HUB_OFFLINE ?? '').trim().toLowerCase()),
  };
}

/**
 * Only the hub settings, for `vps model fetch` and the hub room's defaults (src/hub/), which run without
 * the rest of the service's configuration. Throws ConfigError naming a bad setting.
 */
export function hubSettings(source: NodeJS.ProcessEnv = process.env): HubSettings {
  const shape = z.object(hubShape());
  const parsed = shape.safeParse(present(source, Object.keys(shape.shape)));
  if (!parsed.success) throw configError(parsed.error);
  return hubOf(parsed.data);
}

/** What `vps model fetch` needs beside the hub: which variant, for which provider (EMBEDDING_VARIANT, EMBEDDING_PROVIDER). */
export function modelFetchSettings(source: NodeJS.ProcessEnv = process.env): {
  variant: string;
  provider: 'auto' | 'cuda' | 'webgpu' | 'cpu';
} {
  const shape = z.object({ EMBEDDING_VARIANT: embeddingVariant, EMBEDDING_PROVIDER: embeddingProvider });
  const parsed = shape.safeParse(present(source, Object.keys(shape.shape)));
  if (!parsed.success) throw configError(parsed.error);
  return { variant: parsed.data.EMBEDDING_VARIANT, provider: parsed.data.EMBEDDING_PROVIDER };
}

/** The settings that are set: unset and empty variables both mean "use the default". */
function present(source: NodeJS.ProcessEnv, keys: string[]): Record<string, string> {
  return Object.fromEntries(keys.flatMap((k) => (source[k] === undefined || source[k] === '' ? [] : [[k, source[k]]])));
}

function configError(error: z.ZodError): ConfigError {
  const lines = error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
  return new ConfigError(`Invalid configuration:\n${lines.join('\n')}`);
}

export type Env = z.infer<typeof schema>;

/** The service's settings, as configOf() arranges them (the types follow the schema). */
export type Config = ReturnType<typeof configOf>;
export type PostgresSettings = Extract<Config['database'], { kind: 'postgres' }>;
export type PgliteSettings = Extract<Config['database'], { kind: 'pglite' }>;
/** What one client may ask of the public API (src/admission/, README "Public API limits"). */
export type LimitSettings = Config['limits'];

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Parses the environment; throws ConfigError listing each bad setting by name. */
export function loadConfig(source: NodeJS.ProcessEnv = process.env): Config {
  // PGLITE_PSQL_PORT set but empty, or `off`: no psql port (an unset one means the default port).
  const psqlOff = source.PGLITE_PSQL_PORT !== undefined && ['', 'off'].includes(source.PGLITE_PSQL_PORT.trim().toLowerCase());
  const keys = Object.keys(schema.shape).filter((k) => !(k === 'PGLITE_PSQL_PORT' && psqlOff));
  const parsed = schema.safeParse(present(source, keys));
  if (!parsed.success) throw configError(parsed.error);
  const env = parsed.data;
  const production = env.NODE_ENV === 'production';
  if (env.PGLITE_PSQL_TRUST && production) {
    throw new ConfigError('Invalid configuration:\n  PGLITE_PSQL_TRUST: is for local development only, not with NODE_ENV=production');
  }
  if (env.DATABASE_READ_URL?.length && !env.DATABASE_URL) {
    throw new ConfigError(
      'Invalid configuration:\n  DATABASE_READ_URL: needs DATABASE_URL (the embedded database is one process-local session and has no replicas)',
    );
  }
  if ((env.EMBEDDING_LOGIT_SCALE === undefined) !== (env.EMBEDDING_LOGIT_BIAS === undefined)) {
    throw new ConfigError(
      'Invalid configuration:\n  EMBEDDING_LOGIT_SCALE, EMBEDDING_LOGIT_BIAS: set both (the calibration is the pair) or neither',
    );
  }
  return configOf(env, psqlOff);
}

/** The parsed settings arranged by concern; Config is its return type. */
function configOf(env: Env, psqlOff: boolean) {
  const production = env.NODE_ENV === 'production';
  const dataDir = path.resolve(env.DATA_DIR);
  return {
    env,
    production,
    database: env.DATABASE_URL
      ? {
          kind: 'postgres' as const,
          url: env.DATABASE_URL,
          poolSize: env.DATABASE_POOL_SIZE,
          statementTimeoutMs: env.DATABASE_STATEMENT_TIMEOUT_MS,
          adminStatementTimeoutMs: env.DATABASE_ADMIN_STATEMENT_TIMEOUT_MS,
          connectTimeoutMs: env.DATABASE_CONNECT_TIMEOUT_MS,
          readUrls: env.DATABASE_READ_URL ?? [],
        }
      : {
          kind: 'pglite' as const,
          dataDir: path.join(dataDir, 'pglite'),
          psqlPort: env.PGLITE_PSQL_PORT,
          psql: {
            off: psqlOff,
            password: env.PGLITE_PSQL_PASSWORD,
            trust: env.PGLITE_PSQL_TRUST,
            maxHoldMs: env.PGLITE_PSQL_MAX_HOLD_MS,
            statementTimeoutMs: env.PGLITE_PSQL_STATEMENT_TIMEOUT_MS,
          },
        },
    http: { host: env.HOST, port: env.PORT, bodyLimit: env.HTTP_BODY_LIMIT_BYTES },
    adminToken: env.ADMIN_TOKEN,
    logLevel: env.LOG_LEVEL,
    logFormat: env.LOG_FORMAT,
    metrics: { enabled: env.METRICS_ENABLED, port: env.METRICS_PORT, token: env.METRICS_TOKEN },
    graphql: {
      introspection: env.GRAPHQL_INTROSPECTION ?? !production,
      maxDepth: env.GRAPHQL_MAX_DEPTH,
      maxAliases: env.GRAPHQL_MAX_ALIASES,
      maxCost: env.GRAPHQL_MAX_COST,
      maxTokens: env.GRAPHQL_MAX_TOKENS,
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
      calibration:
        env.EMBEDDING_LOGIT_SCALE !== undefined && env.EMBEDDING_LOGIT_BIAS !== undefined
          ? { logitScale: env.EMBEDDING_LOGIT_SCALE, logitBias: env.EMBEDDING_LOGIT_BIAS }
          : undefined,
      autoFetch: env.MODEL_AUTO_FETCH,
    },
    images: {
      maxBytes: env.IMAGE_MAX_BYTES,
      maxPixels: env.IMAGE_MAX_PIXELS,
      maxScalablePixels: env.IMAGE_MAX_SCALABLE_PIXELS,
      maxPerProduct: env.PRODUCT_MAX_IMAGES,
      fetch: {
        totalTimeoutMs: env.IMAGE_FETCH_TIMEOUT_MS,
        connectTimeoutMs: env.IMAGE_FETCH_CONNECT_TIMEOUT_MS,
        maxRedirects: env.IMAGE_FETCH_MAX_REDIRECTS,
        allowedPrivateHosts: env.IMAGE_FETCH_ALLOWED_PRIVATE_HOSTS,
      },
    },
    hub: hubOf(env),
    limits: limitsOf(env),
    search: {
      language: env.SEARCH_LANGUAGE,
      categoryIndexes: { minVectors: env.SEARCH_CATEGORY_INDEX_MIN_VECTORS, maxShare: env.SEARCH_CATEGORY_INDEX_MAX_SHARE },
      /** Page cursor keys (search/cursor.ts); secret unset: generated per process. */
      cursors: { secret: env.SEARCH_CURSOR_SECRET, previousSecret: env.SEARCH_CURSOR_PREVIOUS_SECRET, ttlSeconds: env.SEARCH_CURSOR_TTL_S },
    },
    jobs: {
      enabled: env.JOBS_ENABLED,
      batchSize: env.REINDEX_BATCH_SIZE,
      throttleMs: env.REINDEX_THROTTLE_MS,
      leaseSeconds: env.REINDEX_LEASE_SECONDS,
      maxAttempts: env.REINDEX_MAX_ATTEMPTS,
      pollIntervalMs: env.JOBS_POLL_INTERVAL_MS,
    },
  };
}

function limitsOf(env: Env) {
  const wait = env.ADMISSION_MAX_WAIT_MS;
  return {
    admission: {
      stages: {
        fetch: { concurrency: env.ADMISSION_FETCH_CONCURRENCY, maxQueue: env.ADMISSION_FETCH_QUEUE, maxWaitMs: wait },
        decode: { concurrency: env.ADMISSION_DECODE_CONCURRENCY, maxQueue: env.ADMISSION_DECODE_QUEUE, maxWaitMs: wait },
        embed: { concurrency: env.ADMISSION_EMBED_CONCURRENCY, maxQueue: env.ADMISSION_EMBED_QUEUE, maxWaitMs: wait },
        query: { concurrency: env.ADMISSION_QUERY_CONCURRENCY, maxQueue: env.ADMISSION_QUERY_QUEUE, maxWaitMs: wait },
        heavyQuery: { concurrency: env.ADMISSION_HEAVY_QUERY_CONCURRENCY, maxQueue: env.ADMISSION_HEAVY_QUERY_QUEUE, maxWaitMs: wait },
      },
      heavyK: env.ADMISSION_HEAVY_K,
    },
    computeThreadNice: env.COMPUTE_THREAD_NICE,
    budget: {
      anonymous: {
        similarityFields: env.BUDGET_SIMILARITY_FIELDS,
        similarityK: env.BUDGET_SIMILARITY_K,
        embeddings: env.BUDGET_EMBEDDINGS,
      },
      admin: {
        similarityFields: env.BUDGET_ADMIN_SIMILARITY_FIELDS,
        similarityK: env.BUDGET_ADMIN_SIMILARITY_K,
        embeddings: env.BUDGET_ADMIN_EMBEDDINGS,
      },
      pageFirst: env.BUDGET_PAGE_FIRST,
    },
    searchMaxPixels: env.SEARCH_IMAGE_MAX_PIXELS,
    requestTimeoutMs: env.GRAPHQL_REQUEST_TIMEOUT_MS,
    http: {
      requestTimeoutMs: env.HTTP_REQUEST_TIMEOUT_MS,
      connectionTimeoutMs: env.HTTP_CONNECTION_TIMEOUT_MS,
      keepAliveTimeoutMs: env.HTTP_KEEP_ALIVE_TIMEOUT_MS,
      headersTimeoutMs: env.HTTP_HEADERS_TIMEOUT_MS,
      uploadMaxBytes: env.HTTP_UPLOAD_MAX_BYTES,
    },
    dnsTimeoutMs: env.IMAGE_FETCH_DNS_TIMEOUT_MS,
    rateLimit: {
      enabled: env.RATE_LIMIT_ENABLED,
      max: env.RATE_LIMIT_MAX,
      windowMs: env.RATE_LIMIT_WINDOW_MS,
      points: env.RATE_LIMIT_POINTS,
      addressPoints: env.RATE_LIMIT_ADDRESS_POINTS,
      heavyPoints: env.ADMISSION_HEAVY_K + 1,
      adminPoints: env.RATE_LIMIT_ADMIN_POINTS,
      refusalPenalty: env.RATE_LIMIT_REFUSAL_PENALTY,
      tarpitMs: env.RATE_LIMIT_TARPIT_MS,
      tarpitMaxHeld: env.RATE_LIMIT_TARPIT_MAX_HELD,
    },
    trustProxy: parseTrustProxy(env.TRUST_PROXY),
  };
}

/** TRUST_PROXY as Fastify takes it: `true`/`false`, a hop count, or a list of addresses and CIDRs. */
function parseTrustProxy(value: string | undefined): boolean | string[] | ((address: string, hop: number) => boolean) {
  if (value === undefined || value.toLowerCase() === 'false') return false;
  if (value.toLowerCase() === 'true') return true;
  // A hop count, as Fastify itself turns a number into (its typings take no number).
  if (/^\d+$/.test(value)) {
    const hops = Number(value);
    return (_address: string, hop: number) => hop < hops;
  }
  return value
    .split(',')
    .map((v) => v.trim())
    .filter(Boolean);
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
