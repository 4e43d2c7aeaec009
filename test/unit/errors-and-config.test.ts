import { GraphQLError } from 'graphql';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';
import { AppError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { formatError } from '../../src/server.js';
import type { Services } from '../../src/services.js';

describe('error masking', () => {
  const logged: unknown[] = [];
  const log = createLogger('silent');
  log.error = (obj: unknown) => void logged.push(obj);
  const format = formatError({ log } as unknown as Services);

  it('masks unexpected errors as INTERNAL_SERVER_ERROR and logs them in full', () => {
    const secret = new Error('connection to db at 10.1.2.3 failed: password authentication');
    const out = format({ message: secret.message, path: ['products'], extensions: { code: 'INTERNAL_SERVER_ERROR' } }, secret);
    expect(out).toEqual({ message: 'Internal server error', path: ['products'], extensions: { code: 'INTERNAL_SERVER_ERROR' } });
    expect(JSON.stringify(out)).not.toMatch(/10\.1\.2\.3|password/);
    expect(logged).toHaveLength(1);
  });

  it('passes AppErrors through with their stable code and details', () => {
    const err = new AppError('IMAGE_TOO_LARGE', 'Image is 20000×20000', { width: 20000 });
    expect(format({ message: 'x', extensions: { code: 'INTERNAL_SERVER_ERROR' } }, err)).toEqual({
      message: 'Image is 20000×20000',
      extensions: { width: 20000, code: 'IMAGE_TOO_LARGE' },
    });
  });

  it('passes GraphQL validation errors', () => {
    const err = new GraphQLError('Cannot query field "nope"', { extensions: { code: 'GRAPHQL_VALIDATION_FAILED' } });
    const formatted = { message: err.message, extensions: { code: 'GRAPHQL_VALIDATION_FAILED' } };
    expect(format(formatted, err)).toBe(formatted);
  });
});

describe('configuration', () => {
  it('defaults to the embedded database and port 4000', () => {
    const c = loadConfig({});
    expect(c.database.kind).toBe('pglite');
    expect(c.http.port).toBe(4000);
    expect(c.adminToken).toBeUndefined();
    expect(c.graphql.introspection).toBe(true);
  });

  it('uses PostgreSQL when DATABASE_URL is set, and production turns introspection off', () => {
    const c = loadConfig({ DATABASE_URL: 'postgres://u:p@db:5432/x', NODE_ENV: 'production' });
    expect(c.database).toMatchObject({ kind: 'postgres', url: 'postgres://u:p@db:5432/x' });
    expect(c.graphql.introspection).toBe(false);
  });

  it('names every bad setting and never echoes values', () => {
    let err: unknown;
    try {
      loadConfig({ PORT: '70000', EMBEDDING_PROVIDER: 'tpu', ADMIN_TOKEN: 'hunter2', DATABASE_URL: 'mysql://root:hunter3@x' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const message = (err as Error).message;
    for (const name of ['PORT', 'EMBEDDING_PROVIDER', 'ADMIN_TOKEN', 'DATABASE_URL']) expect(message).toContain(name);
    expect(message).not.toMatch(/hunter2|hunter3/);
  });

  it('takes a model calibration as a pair (EMBEDDING_LOGIT_SCALE and _BIAS), never one alone', () => {
    expect(loadConfig({ EMBEDDING_LOGIT_SCALE: '4.72', EMBEDDING_LOGIT_BIAS: '-16.77' }).embedding.calibration).toEqual({
      logitScale: 4.72,
      logitBias: -16.77,
    });
    expect(loadConfig({}).embedding.calibration).toBeUndefined();
    expect(() => loadConfig({ EMBEDDING_LOGIT_SCALE: '4.72' })).toThrow(/set both/);
  });

  it('resolves the hub cache as huggingface_hub does, and HF_HUB_OFFLINE', () => {
    const c = loadConfig({ HF_HOME: '/srv/hf', HF_HUB_OFFLINE: '1' });
    expect(c.hub).toMatchObject({ cacheDir: '/srv/hf/hub', offline: true });
  });
});

describe('TRUST_PROXY', () => {
  const trust = (v?: string) => loadConfig(v === undefined ? {} : { TRUST_PROXY: v }).limits.trustProxy;
  it('is off unless set, and takes true, a hop count or a list of addresses', () => {
    expect(trust()).toBe(false);
    expect(trust('false')).toBe(false);
    expect(trust('true')).toBe(true);
    expect(trust('10.0.0.0/8, 127.0.0.1')).toEqual(['10.0.0.0/8', '127.0.0.1']);
    const hops = trust('2');
    expect(typeof hops).toBe('function');
    if (typeof hops !== 'function') return;
    expect([0, 1, 2].map((hop) => hops('192.0.2.1', hop))).toEqual([true, true, false]);
  });
});
