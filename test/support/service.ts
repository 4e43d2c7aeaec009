/** Starts the real service on a free port over this test file's own database, and talks GraphQL to it. */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { writeTinyModel } from '../../scripts/models/tiny-model.js';
import { loadEmbedder, startService, type RunningService } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { createTestDatabase } from './test-db.js';

export const ADMIN_TOKEN = 'test-admin-token-0123456789';

export interface TestService {
  service: RunningService;
  url: string;
  gql<T = any>(
    query: string,
    variables?: Record<string, unknown>,
    opts?: { admin?: boolean; headers?: Record<string, string> },
  ): Promise<GqlResponse<T>>;
  stop(): Promise<void>;
}

export interface GqlResponse<T> {
  status: number;
  data?: T;
  errors?: Array<{ message: string; extensions?: { code?: string; [k: string]: unknown }; path?: string[] }>;
}

/**
 * `model`: a model directory to load (e.g. from tinyModelDir()); without it the service runs with no
 * embedding model, whatever the machine's cache holds.
 */
export async function startTestService(env: Record<string, string> = {}, opts: { model?: string } = {}): Promise<TestService> {
  const database = await createTestDatabase();
  const config = loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'silent',
    ADMIN_TOKEN,
    DATA_DIR: '.cache/test-data',
    // Every request of a test file comes from one address: the query allowances (per connection and per
    // address) would turn heavy tests into RATE_LIMITED ones. test/integration/rate-limit.test.ts sets its own.
    RATE_LIMIT_POINTS: '1000000000',
    RATE_LIMIT_ADDRESS_POINTS: '1000000000',
    ...env,
  });
  const log = createLogger(config.logLevel);
  const embedder = opts.model ? { embedder: await loadEmbedder(config, opts.model, log), source: 'test' } : null;
  const service = await startService(config, log, { database, embedder });
  const url = service.http.url;
  return {
    service,
    url,
    async gql(query, variables, opts = {}) {
      const res = await fetch(`${url}/graphql`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(opts.admin ? { authorization: `Bearer ${ADMIN_TOKEN}` } : {}),
          ...opts.headers,
        },
        body: JSON.stringify({ query, variables }),
      });
      const body = (await res.json()) as GqlResponse<never>;
      return { ...body, status: res.status };
    },
    stop: () => service.stop(),
  };
}

/** The error codes of a response, in order. */
export const codes = (r: GqlResponse<unknown>) => (r.errors ?? []).map((e) => e.extensions?.code);

let tinyDir: Promise<string> | null = null;

/** The tiny stand-in SigLIP model, written once per test file into a temporary directory. */
export function tinyModelDir(): Promise<string> {
  tinyDir ??= (async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vps-tiny-'));
    await writeTinyModel(dir);
    return dir;
  })();
  return tinyDir;
}
