/**
 * Issue 21, findings 1–8: one analyst's psql session, or one anonymous socket, cannot stall, break or
 * take over the service through the embedded database's psql port. Each test is the probe's request
 * (through node-postgres, psql itself where installed, or raw bytes where the probe sent raw bytes)
 * followed by the service's own statement on the same PGlite session.
 *
 * Raw frames follow the PostgreSQL wire protocol as documented ("Frontend/Backend Protocol: Message
 * Formats"): a StartupMessage is Int32 length, Int32 196608 (3.0), then name\0value\0 pairs and \0;
 * every later message is a type byte, an Int32 length that counts itself, and the body.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';
import { openDatabase, type Database } from '../../src/db/connect.js';
import { migrateToLatest } from '../../src/db/migrate.js';
import { PSQL_MAX_MESSAGE_BYTES } from '../../src/db/psql-port.js';

const PASSWORD = 'a-test-password-1234';
const HOLD_MS = 800;
const AUTH_TIMEOUT_MS = 2000;
const FAILED_DELAY_MS = 50;

const hasPsql = spawnSync('psql', ['--version']).status === 0;

function startupMessage(params: Record<string, string>): Buffer {
  const body = Buffer.from(
    `${Object.entries(params)
      .flatMap(([k, v]) => [k, v])
      .join('\0')}\0\0`,
    'utf8',
  );
  const head = Buffer.alloc(8);
  head.writeInt32BE(8 + body.length, 0);
  head.writeInt32BE(196608, 4);
  return Buffer.concat([head, body]);
}

function frame(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.write(type, 0);
  head.writeInt32BE(4 + body.length, 1);
  return Buffer.concat([head, body]);
}

/** A raw socket to the port that records what comes back and when it closes. */
async function rawSocket(port: number) {
  const socket = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  let received = Buffer.alloc(0);
  socket.on('data', (d: Buffer) => (received = Buffer.concat([received, d])));
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return {
    socket,
    closed,
    received: () => received,
    /** Resolves true when the socket closes within `ms`, false otherwise. */
    closesWithin: (ms: number) => Promise.race([closed.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]),
    /** Waits until `n` bytes arrived (or `ms` passed). */
    async bytes(n: number, ms = 5000) {
      const until = Date.now() + ms;
      while (received.length < n && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
      return received;
    },
  };
}

/** The SQLSTATE of the first ErrorResponse in what the server sent, if any. */
function errorCode(bytes: Buffer): string | null {
  for (let i = 0; i + 5 <= bytes.length;) {
    const len = bytes.readInt32BE(i + 1);
    if (bytes[i] === 0x45) {
      const fields = bytes
        .subarray(i + 5, i + 1 + len)
        .toString('utf8')
        .split('\0');
      return fields.find((f) => f.startsWith('C'))?.slice(1) ?? null;
    }
    i += 1 + len;
  }
  return null;
}

describe('the psql port cannot stall, break or take over the service (issue 21)', () => {
  let database: Database;
  let port: number;
  const url = () => database.psqlUrl!;
  const serviceRole = async () => (await sql<{ role: string }>`SELECT current_user AS role`.execute(database.db)).rows[0]!.role;
  const serviceCount = async () => Number((await sql<{ n: string }>`SELECT count(*) AS n FROM products`.execute(database.db)).rows[0]!.n);

  beforeAll(async () => {
    database = await openDatabase({
      kind: 'pglite',
      psqlPort: 0,
      psql: { password: PASSWORD, maxHoldMs: HOLD_MS, authTimeoutMs: AUTH_TIMEOUT_MS, failedPasswordDelayMs: FAILED_DELAY_MS },
    });
    await migrateToLatest(database.db);
    port = Number(new URL(url()).port);
  });
  afterAll(async () => {
    await database?.close();
  });

  it('1. COPY … FROM STDIN is refused before PGlite sees it; the client and the service go on', async () => {
    const c = new pg.Client({ connectionString: url() });
    await c.connect();
    await c.query('CREATE TEMP TABLE ct (x text)');
    await expect(c.query('COPY ct FROM STDIN')).rejects.toMatchObject({ code: '0A000' });
    // The same through the extended protocol (a Parse), hidden behind a comment and odd case.
    await expect(c.query({ text: '/* x */ copy ct fRoM stdin', values: [] })).rejects.toMatchObject({ code: '0A000' });
    expect((await c.query('SELECT 2 AS two')).rows).toEqual([{ two: 2 }]);
    // COPY … TO STDOUT (psql's \copy … to) is fine; a word in a string literal is not a COPY.
    expect((await c.query(`SELECT 'copy from stdin' AS s`)).rows).toEqual([{ s: 'copy from stdin' }]);
    await c.end();
    expect(await serviceCount()).toBeGreaterThanOrEqual(0);
  });

  it.skipIf(!hasPsql)('1. psql\'s own "\\copy ct from stdin" answers an error and the service goes on', async () => {
    // The probe's exact commands. Spawned asynchronously: the port runs in this process.
    const child = spawn('psql', [url(), '-c', 'create temp table ct(x text)', '-c', '\\copy ct from stdin']);
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdin.end('a\n\\.\n');
    const kill = setTimeout(() => child.kill(), 20_000);
    const status = await new Promise<number | null>((resolve) => child.on('close', resolve));
    clearTimeout(kill);
    const run = { status, stderr };
    expect(run.status).not.toBe(0);
    expect(run.stderr).toMatch(/COPY FROM STDIN is not available/);
    expect(await serviceCount()).toBeGreaterThanOrEqual(0);
  });

  it('1. COPY data messages are protocol violations', async () => {
    const s = await rawSocket(port);
    s.socket.write(startupMessage({ user: 'postgres', database: 'postgres' }));
    await s.bytes(9);
    s.socket.write(frame('p', Buffer.from(`${PASSWORD}\0`)));
    await s.bytes(20);
    s.socket.write(frame('d', Buffer.from('a\n')));
    expect(await s.closesWithin(5000)).toBe(true);
    expect(errorCode(s.received())).toBe('08P01');
    expect(await serviceCount()).toBeGreaterThanOrEqual(0);
  });

  it('2. replication=database and other startup parameters are refused; the service keeps its session', async () => {
    const replication = new pg.Client({ connectionString: url(), replication: 'database' } as pg.ClientConfig);
    await expect(replication.connect()).rejects.toMatchObject({ code: '08P01' });
    const options = new pg.Client({ connectionString: url(), options: '-c search_path=nowhere' });
    await expect(options.connect()).rejects.toMatchObject({ code: '08P01' });
    // The service's statements (extended protocol, as Kysely sends them) still work.
    expect(await serviceCount()).toBeGreaterThanOrEqual(0);
    const c = new pg.Client({ connectionString: url(), application_name: 'probe' });
    await c.connect();
    expect((await c.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    await c.end();
  });

  it('3. SET SESSION AUTHORIZATION does not carry into the service, while connected or after leaving', async () => {
    const c = new pg.Client({ connectionString: url() });
    await c.connect();
    await c.query('CREATE ROLE probe_nobody NOLOGIN');
    await c.query('SET SESSION AUTHORIZATION probe_nobody');
    // Between the client's units of work the service runs as itself ...
    expect(await serviceRole()).toBe('postgres');
    expect(await serviceCount()).toBeGreaterThanOrEqual(0);
    // ... and within a transaction the client's role holds, until it ends.
    await c.query('BEGIN');
    await c.query('SET SESSION AUTHORIZATION probe_nobody');
    expect((await c.query('SELECT current_user AS u')).rows).toEqual([{ u: 'probe_nobody' }]);
    await c.query('COMMIT');
    await c.query('SET SESSION AUTHORIZATION probe_nobody');
    await c.end(); // leaves as probe_nobody
    expect(await serviceRole()).toBe('postgres');
    expect(await serviceCount()).toBeGreaterThanOrEqual(0);
  });

  it('4. a password message declaring 2 GB is refused on its header, before a byte of it is kept', async () => {
    const s = await rawSocket(port);
    s.socket.write(startupMessage({ user: 'postgres', database: 'postgres' }));
    await s.bytes(9); // AuthenticationCleartextPassword
    const head = Buffer.alloc(5);
    head.write('p', 0);
    head.writeInt32BE(0x7ffffff0, 1);
    s.socket.write(Buffer.concat([head, Buffer.alloc(64 * 1024)]));
    expect(await s.closesWithin(5000)).toBe(true);
    expect(errorCode(s.received().subarray(9))).toBe('08P01');
  });

  it('4. a second StartupMessage in the password phase is refused at once', async () => {
    const s = await rawSocket(port);
    s.socket.write(startupMessage({ user: 'postgres', database: 'postgres' }));
    await s.bytes(9);
    const big = Buffer.alloc(8);
    big.writeInt32BE(0x7ffffff0, 0);
    big.writeInt32BE(196608, 4);
    s.socket.write(big);
    expect(await s.closesWithin(5000)).toBe(true);
    expect(errorCode(s.received().subarray(9))).toBe('08P01');
  });

  it('4. after authentication, a message longer than the bound is refused on its header', async () => {
    const s = await rawSocket(port);
    s.socket.write(startupMessage({ user: 'postgres', database: 'postgres' }));
    await s.bytes(9);
    s.socket.write(frame('p', Buffer.from(`${PASSWORD}\0`)));
    await s.bytes(20);
    const head = Buffer.alloc(5);
    head.write('Q', 0);
    head.writeInt32BE(PSQL_MAX_MESSAGE_BYTES + 5, 1);
    s.socket.write(head);
    expect(await s.closesWithin(5000)).toBe(true);
    expect(errorCode(s.received())).toBe('54000');
    expect(await serviceCount()).toBeGreaterThanOrEqual(0);
  });

  it('5. in memory, a statement that runs past PGLITE_PSQL_MAX_HOLD_MS ends its session; the service goes on', async () => {
    const c = new pg.Client({ connectionString: url() });
    await c.connect();
    c.on('error', () => {});
    // An in-memory database is never interrupted (its data would go with the worker): at the bound the
    // client is told and cut off, the statement runs to its end, and then the service's session is
    // restored. The file-backed case, where the statement itself ends, is the next describe block.
    const err = await c.query(`SELECT pg_sleep(${(HOLD_MS * 2) / 1000})`).then(
      () => null,
      (e: Error) => e,
    );
    expect(err?.message).toMatch(/PGLITE_PSQL_MAX_HOLD_MS/);
    expect(await serviceCount()).toBeGreaterThanOrEqual(0);
    expect(await serviceRole()).not.toBe('');
  });

  it('6. four sockets that never authenticate hold no session slot and are closed after the auth timeout', async () => {
    const idle = await Promise.all([0, 1, 2, 3].map(() => rawSocket(port)));
    for (const s of idle) s.socket.write(Buffer.from([0, 0, 0])); // the probe's 3 bytes
    // A real client gets in meanwhile.
    const c = new pg.Client({ connectionString: url() });
    await c.connect();
    expect((await c.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    await c.end();
    // One of them keeps trickling bytes: that does not extend its time.
    const trickle = setInterval(() => idle[0]!.socket.write(Buffer.from([0])), 100);
    try {
      const closed = await Promise.all(idle.map((s) => s.closesWithin(AUTH_TIMEOUT_MS + 4000)));
      expect(closed).toEqual([true, true, true, true]);
    } finally {
      clearInterval(trickle);
    }
  });

  it('7. failed passwords from one address are slowed down, over several connections at once', async () => {
    const wrong = () => new pg.Client({ connectionString: url().replace(PASSWORD, 'wrong-password-0000000') }).connect();
    const started = Date.now();
    // The probe's four connections at once.
    const results = await Promise.allSettled([0, 1, 2, 3].map(() => wrong()));
    expect(results.map((r) => (r.status === 'rejected' ? (r.reason as { code?: string }).code : 'in'))).toEqual(Array(4).fill('28P01'));
    // Tried one after another, each failure doubling the wait: 50 + 100 + 200 + 400 ms at least.
    expect(Date.now() - started).toBeGreaterThanOrEqual(FAILED_DELAY_MS * (1 + 2 + 4 + 8));
    // The right password still gets in (in its turn), and resets the count.
    const c = new pg.Client({ connectionString: url() });
    await c.connect();
    await c.end();
  });

  it('7. a psql password shorter than 16 characters is refused by the configuration', () => {
    expect(() => loadConfig({ PGLITE_PSQL_PASSWORD: 'twelve-chars' })).toThrow(ConfigError);
    expect(() => loadConfig({ PGLITE_PSQL_PASSWORD: 'sixteen-chars-ok' })).not.toThrow();
  });

  it("8. setseed() in a psql session does not make the service's random() predictable", async () => {
    const c = new pg.Client({ connectionString: url() });
    await c.connect();
    // What random() gives right after setseed(0.5), within one unit of work.
    const seeded = await c.query<{ r: number }>('SELECT setseed(0.5), random() AS r');
    const predicted = seeded.rows[0]!.r;
    await c.query('SELECT setseed(0.5)');
    const service = (await sql<{ r: number }>`SELECT random() AS r`.execute(database.db)).rows[0]!.r;
    expect(service).not.toBe(predicted);
    await c.end();
  });
});

describe('5. with a data directory (as `npm start` runs it), one statement is ended by its time limit (issue 21)', () => {
  const STATEMENT_TIMEOUT_MS = 1000;
  let database: Database;
  let dir: string;
  const serviceCount = async (table = 'products') =>
    Number((await sql<{ n: string }>`SELECT count(*) AS n FROM ${sql.table(table)}`.execute(database.db)).rows[0]!.n);
  const client = async () => {
    const c = new pg.Client({ connectionString: database.psqlUrl! });
    c.on('error', () => {}); // the FATAL that ends the session also reaches the client as an 'error'
    await c.connect();
    return c;
  };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'vps-psql-timeout-'));
    database = await openDatabase({
      kind: 'pglite',
      dataDir: dir,
      psqlPort: 0,
      psql: { password: PASSWORD, maxHoldMs: 30_000, statementTimeoutMs: STATEMENT_TIMEOUT_MS },
    });
    await migrateToLatest(database.db);
  });
  afterAll(async () => {
    await database?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("the probe's `select pg_sleep(6)` ends at the limit with 57014, the service's thread turns meanwhile, and the service goes on", async () => {
    const c = await client();
    const started = Date.now();
    const answer = c.query('SELECT pg_sleep(6)').then(
      () => null,
      (err: Error & { code?: string }) => err,
    );
    // On the main thread the statement stopped every timer (and /healthz) for its length; in the
    // worker the service's event loop keeps turning: each 100 ms sleep ends about on time.
    let worstLag = 0;
    for (let i = 0; i < 5; i++) {
      const t = Date.now();
      await new Promise((r) => setTimeout(r, 100));
      worstLag = Math.max(worstLag, Date.now() - t - 100);
    }
    expect(worstLag).toBeLessThan(400);
    const err = await answer;
    expect(err?.code).toBe('57014');
    expect(err?.message).toMatch(/PGLITE_PSQL_STATEMENT_TIMEOUT_MS/);
    expect(Date.now() - started).toBeLessThan(5500); // ended, not run to its 6 s
    expect(await serviceCount()).toBeGreaterThanOrEqual(0);
    await c.end().catch(() => {});
  });

  it("the probe's `SET statement_timeout=500; select pg_sleep(2)`: the port's own limit holds whatever the client sets", async () => {
    const c = await client();
    const err = await c.query('SET statement_timeout = 500; SELECT pg_sleep(2)').then(
      () => null,
      (e: Error & { code?: string }) => e,
    );
    expect(err?.code).toBe('57014');
    await c.end().catch(() => {});
  });

  it('a bulk INSERT ended by the limit is rolled back, committed rows survive, and a new client is served', async () => {
    const setup = await client();
    await setup.query('CREATE TABLE analyst_scratch (x int)');
    await setup.query('INSERT INTO analyst_scratch VALUES (1)');
    await setup.end();
    const c = await client();
    const err = await c.query('INSERT INTO analyst_scratch SELECT g FROM generate_series(2, 500000000) AS g').then(
      () => null,
      (e: Error & { code?: string }) => e,
    );
    expect(err?.code).toBe('57014');
    await c.end().catch(() => {});
    // The service's own session: the worker was replaced and the data directory recovered.
    expect(await serviceCount('analyst_scratch')).toBe(1);
    const next = await client();
    expect((await next.query<{ n: string }>('SELECT count(*) AS n FROM analyst_scratch')).rows[0]!.n).toBe('1');
    await next.end();
  });
});
