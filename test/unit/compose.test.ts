/**
 * docker-compose.yml kept true without a container engine: valid against the Compose specification's
 * JSON schema (vendored from the compose-spec repository, Apache-2.0: test/fixtures/compose-spec/), and
 * shaped as the README promises: healthchecks, the service waiting for the database and for the
 * one-shot migration, migrations and service as the non-superuser role of docker/db-init.sh.
 */
import fs from 'node:fs';
import { Ajv } from 'ajv';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';

interface Service {
  image?: string;
  build?: unknown;
  command?: string[];
  environment?: Record<string, string>;
  healthcheck?: { test: string[] };
  depends_on?: Record<string, { condition: string }>;
  restart?: string;
  volumes?: string[];
}
const compose = parse(fs.readFileSync('docker-compose.yml', 'utf8'), { merge: true }) as { services: Record<string, Service> };

describe('docker-compose.yml', () => {
  it('is valid against the Compose specification schema', () => {
    const { $schema: _draft, ...schema } = JSON.parse(fs.readFileSync('test/fixtures/compose-spec/compose-spec.json', 'utf8')) as {
      $schema: string;
    };
    // draft-07, Ajv's default dialect; formats ("duration") are Compose's own and not checked here.
    const ajv = new Ajv({ allErrors: true, strict: false, validateFormats: false });
    const validate = ajv.compile(schema);
    // Compose resolves YAML merge keys (<<) before it validates, as `merge: true` does here.
    expect(validate(compose), JSON.stringify(validate.errors, null, 2)).toBe(true);
    // and a broken file is refused (the schema is really applied)
    expect(validate({ services: { app: { depends_on: { db: { condition: 'sometime' } } } } })).toBe(false);
  });

  it('waits for a healthy database and a finished migration; checks its own health', () => {
    const { db, migrate, app } = compose.services;
    expect(db?.healthcheck?.test.join(' ')).toMatch(/pg_isready -U vps -d vps/);
    expect(migrate?.command).toEqual(expect.arrayContaining(['dist/src/main.js', 'migrate']));
    expect(migrate?.restart).toBe('no');
    expect(migrate?.depends_on?.db?.condition).toBe('service_healthy');
    expect(app?.depends_on).toEqual({ db: { condition: 'service_healthy' }, migrate: { condition: 'service_completed_successfully' } });
    expect(app?.healthcheck?.test.join(' ')).toMatch(/\/readyz/);
  });

  it('migrates and serves as the non-superuser role that the init script creates', () => {
    const init = fs.readFileSync('docker/db-init.sh', 'utf8');
    expect(init).toMatch(/CREATE ROLE vps LOGIN NOSUPERUSER/);
    expect(init).toMatch(/CREATE DATABASE vps OWNER vps/);
    expect(init).toMatch(/CREATE EXTENSION IF NOT EXISTS vector/);
    const { db, migrate, app } = compose.services;
    expect(db?.volumes).toContain('./docker/db-init.sh:/docker-entrypoint-initdb.d/10-vps.sh:ro');
    for (const s of [migrate, app]) expect(s?.environment?.DATABASE_URL).toMatch(/^postgres:\/\/vps:[^@]+@db:5432\/vps$/);
  });
});
