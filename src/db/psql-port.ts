/**
 * The embedded database's psql port for analysts: a small PostgreSQL wire-protocol front for PGlite.
 *
 * PGlite is one PostgreSQL session, shared with the service (in a worker thread: db/pglite-host.ts). So the port is not a
 * pipe to PGlite but a gatekeeper that speaks the protocol itself wherever a client could change what
 * the service's session is (docs/ARCHITECTURE.md, "The embedded database's psql port", has the
 * reasoning; SECURITY.md what it promises):
 *
 * - The client's StartupMessage never reaches PGlite. The port authenticates (cleartext password: the
 *   port listens on loopback only, so it never leaves the machine, and every client speaks it) and
 *   answers the startup itself. Startup parameters other than user, database, application_name (and a
 *   client_encoding that is UTF8 already) are refused: `replication=database` once turned the
 *   service's session into a walsender, `options=-c …` would set what the service runs with.
 * - Every message's declared length is checked against a bound before a byte of it is buffered
 *   (a password 1 KiB, a startup packet 10 KB, any later message PSQL_MAX_MESSAGE_BYTES), and a message
 *   is assembled once from the chunks it arrived in.
 * - A socket has AUTH_TIMEOUT_MS from connecting to being authenticated, and unauthenticated sockets
 *   do not hold the session slots (they have a cap of their own). Failed passwords are slowed per
 *   client address: each one waits longer before the next try from that address is looked at.
 * - After authentication only the messages of the simple and extended query protocols pass (Query,
 *   Parse, Bind, Describe, Execute, Close, Flush, Sync); COPY data, function calls and a second startup
 *   are protocol violations. A COPY … FROM STDIN is refused before PGlite sees it (psql-statements.ts).
 * - The lock (the service's session lock) is taken per unit of work (up to a Sync or a simple Query
 *   that leaves no transaction open), so app statements never run inside a psql transaction. One
 *   client holds it at most `maxHoldMs` at a stretch: past it, it is cut off (FATAL 25P03).
 * - One statement runs at most `statementTimeoutMs` (and never past the hold bound): PGlite runs in a
 *   worker thread, so the service goes on answering meanwhile, and a statement past its limit is ended
 *   by replacing that thread (db/pglite-host.ts): the client is cut off (FATAL 57014), its transaction
 *   rolled back by crash recovery, and the service's session is a fresh one.
 * - Every time a client hands the session back, the port restores the service's session: DISCARD ALL
 *   (settings, prepared statements, temp tables, advisory locks), SET SESSION AUTHORIZATION to the
 *   service's own role (PGlite's DISCARD ALL and SET SESSION AUTHORIZATION DEFAULT keep a role a client
 *   switched to), and a fresh random seed (setseed() would make the service's random() predictable).
 *   So an analyst's SET lasts for one unit of work: a transaction keeps several statements together.
 *
 * An in-memory database (tests only) cannot be interrupted without losing its data: there a long
 * statement runs to its end and the client is cut off then. See docs/ARCHITECTURE.md.
 */
import { createHash, randomBytes, randomInt, timingSafeEqual } from 'node:crypto';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Mutex } from 'async-mutex';
import { LRUCache } from 'lru-cache';
import type { Logger } from '../log.js';
import { StatementInterruptedError, type EmbeddedDatabase } from './pglite-host.js';
import { mayCopyFromClient } from './psql-statements.js';

export interface PsqlPortOptions {
  /** Loopback port (0: any free one). */
  port: number;
  /** The password clients must send (at least PSQL_MIN_PASSWORD_LENGTH); unset: a random one is generated. */
  password?: string | undefined;
  /** No password at all (local development only). */
  trust?: boolean;
  /** The longest one client may hold the session at a stretch (an open transaction); default 60 s. */
  maxHoldMs?: number;
  /** The longest one statement may run (on a file-backed database); default 10 s. */
  statementTimeoutMs?: number;
  /** An authenticated client silent this long is closed; default 5 minutes. */
  idleTimeoutMs?: number;
  /** Authenticated sessions at once; default 4. */
  maxConnections?: number;
  /** From connecting to authenticated, at most; default AUTH_TIMEOUT_MS. */
  authTimeoutMs?: number;
  /** The wait after an address's first failed password, doubled per further failure; default 250 ms. */
  failedPasswordDelayMs?: number;
}

export interface PsqlPort {
  /** Connection URL, password included. */
  url: string;
  port: number;
  /** The password in force (null under trust). */
  password: string | null;
  stop(): Promise<void>;
}

/** The shortest password the port accepts (a generated one has 24 characters). */
export const PSQL_MIN_PASSWORD_LENGTH = 16;
/** The largest message a client may send after authentication (an analyst's statement text and its parameters). */
export const PSQL_MAX_MESSAGE_BYTES = 1024 * 1024;
const AUTH_TIMEOUT_MS = 5_000;
/** Sockets connected but not yet authenticated, at once. */
const MAX_PENDING = 16;
const MAX_STARTUP_BYTES = 10_000;
const MAX_PASSWORD_BYTES = 1024;
const MAX_FAILED_PASSWORD_DELAY_MS = 10_000;

const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const CANCEL_REQUEST = 80877102;
const PROTOCOL_V3 = 196608;
const SYNC = Uint8Array.from([0x53, 0, 0, 0, 4]); // 'S', length 4

/** Startup parameters a client may send (others are refused): none of them reaches PGlite. */
const STARTUP_PARAMETERS = new Set(['user', 'database', 'application_name', 'client_encoding']);
/** Frontend messages of the simple and extended query protocols (PostgreSQL docs, "Message Formats"). */
const QUERY_MESSAGES = new Set('QPBDECHS'.split('').map((c) => c.charCodeAt(0)));

/** One backend message: its type, a 4-byte length that counts itself, and the body. */
function backendMessage(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.write(type, 0);
  head.writeInt32BE(4 + body.length, 1);
  return Buffer.concat([head, body]);
}

function errorResponse(severity: 'FATAL' | 'ERROR', code: string, message: string): Buffer {
  return backendMessage('E', Buffer.from(`S${severity}\0V${severity}\0C${code}\0M${message}\0\0`, 'utf8'));
}

const readyForQuery = (status: number) => backendMessage('Z', Buffer.from([status]));

/** A simple-protocol Query message. */
function simpleQuery(text: string): Uint8Array {
  return new Uint8Array(backendMessage('Q', Buffer.from(`${text}\0`, 'utf8')));
}

const quoteIdent = (name: string) => `"${name.replaceAll('"', '""')}"`;

/**
 * Follows PGlite's answers (a stream of typed messages, split anywhere) to the last ReadyForQuery's
 * status byte: 'I' idle, 'T' in a transaction, 'E' in a failed one. PGlite.isInTransaction() cannot be
 * used here: it tracks only what goes through PGlite's own query()/exec(), not raw protocol messages.
 */
class TransactionStatus {
  private header = Buffer.alloc(0);
  private remaining = 0;
  private wantStatus = false;
  last = 0x49; // 'I'

  get inTransaction() {
    return this.last !== 0x49;
  }

  /** A fresh session (the database's worker was replaced): idle, no message half read. */
  reset() {
    this.header = Buffer.alloc(0);
    this.remaining = 0;
    this.wantStatus = false;
    this.last = 0x49;
  }

  feed(data: Uint8Array) {
    let i = 0;
    while (i < data.length) {
      if (this.remaining > 0) {
        if (this.wantStatus) {
          this.last = data[i]!;
          this.wantStatus = false;
        }
        const n = Math.min(this.remaining, data.length - i);
        i += n;
        this.remaining -= n;
        continue;
      }
      const take = Math.min(5 - this.header.length, data.length - i);
      this.header = Buffer.concat([this.header, data.subarray(i, i + take)]);
      i += take;
      if (this.header.length === 5) {
        this.wantStatus = this.header[0] === 0x5a; // 'Z' ReadyForQuery
        this.remaining = this.header.readInt32BE(1) - 4;
        this.header = Buffer.alloc(0);
      }
    }
  }
}

/**
 * The bytes received and not yet consumed, as the chunks they came in: a message is copied out once,
 * when all of it is there (concatenating per chunk made a large declared message quadratic).
 */
class Inbox {
  private chunks: Buffer[] = [];
  length = 0;

  push(chunk: Buffer) {
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  /** The first `n` bytes (n ≤ length), without consuming them. */
  peek(n: number): Buffer {
    if (this.chunks[0]!.length < n) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0]!.subarray(0, n);
  }

  /** Removes and returns the first `n` bytes (n ≤ length). */
  take(n: number): Buffer {
    const out = Buffer.from(this.peek(n));
    let left = n;
    while (left > 0) {
      const head = this.chunks[0]!;
      if (head.length <= left) {
        this.chunks.shift();
        left -= head.length;
      } else {
        this.chunks[0] = head.subarray(left);
        left = 0;
      }
    }
    this.length -= n;
    return out;
  }
}

/**
 * Failed passwords per client address: an address's tries are looked at one after another, and each
 * failure makes the next one wait longer (delay × 2^(failures−1), at most 10 s), forgotten after 15
 * minutes without one. On a loopback-only port every client has the same address, so a guesser slows
 * the analysts too; it cannot keep them out, and the service itself is not affected.
 */
class PasswordThrottle {
  private readonly addresses = new LRUCache<string, { failures: number; turn: Promise<void> }>({ max: 10_000, ttl: 15 * 60_000 });

  constructor(private readonly delayMs: number) {}

  /** Runs `check` in the address's turn; a failed check delays the turns after it. */
  async attempt(address: string, check: () => boolean): Promise<boolean> {
    const entry = this.addresses.get(address) ?? { failures: 0, turn: Promise.resolve() };
    this.addresses.set(address, entry);
    let ok = false;
    const mine = entry.turn.then(async () => {
      ok = check();
      if (ok) {
        entry.failures = 0;
        return;
      }
      entry.failures++;
      await sleep(Math.min(MAX_FAILED_PASSWORD_DELAY_MS, this.delayMs * 2 ** (entry.failures - 1)));
    });
    entry.turn = mine;
    await mine;
    return ok;
  }
}

const digest = (s: string | Buffer) => createHash('sha256').update(s).digest();

interface ConnectionSettings {
  passwordDigest: Buffer | null;
  maxHoldMs: number;
  statementTimeoutMs: number;
  idleTimeoutMs: number;
  authTimeoutMs: number;
  throttle: PasswordThrottle;
  /** The role the service's session runs as, restored whenever a client hands the session back. */
  serviceRole: string;
  /** ParameterStatus messages sent at startup (server_version and the like, read from PGlite). */
  parameterStatus: Buffer;
  /** May another client become a session now? Counts it when yes. */
  admit(): boolean;
}

class PsqlConnection {
  private readonly inbox = new Inbox();
  private phase: 'startup' | 'password' | 'checking' | 'ready' | 'closed' = 'startup';
  private user = 'postgres';
  /** Messages run one after another, in order. */
  private chain: Promise<void> = Promise.resolve();
  private release: (() => void) | null = null;
  private readonly status = new TransactionStatus();
  private holdTimer: NodeJS.Timeout | null = null;
  private heldSince = 0;
  private idleTimer: NodeJS.Timeout | null = null;
  private authTimer: NodeJS.Timeout | null = null;
  /** After a refused Parse, the messages up to the next Sync are dropped (as PostgreSQL does after an error). */
  private skipToSync = false;
  /** Whether this connection counts as a session (authenticated). */
  admitted = false;
  /** Resolves once the session is rolled back, reset and handed back. */
  readonly closed: Promise<void>;
  private resolveClosed!: () => void;

  constructor(
    private readonly socket: net.Socket,
    private readonly pg: EmbeddedDatabase,
    private readonly lock: Mutex,
    private readonly opts: ConnectionSettings,
    private readonly log: Logger | undefined,
  ) {
    this.closed = new Promise((r) => (this.resolveClosed = r));
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => this.close()); // ECONNRESET and the like: the client went away
    socket.on('close', () => this.close());
    // Unlike the idle timeout, no byte sent extends this: a socket authenticates in time or goes.
    this.authTimer = setTimeout(() => this.refuse('08006', 'authentication timed out'), opts.authTimeoutMs);
    this.authTimer.unref();
  }

  /** Restarts the idle timeout; called per complete message, not per byte. */
  private touch() {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => this.cutOff('57P05', 'closing the psql session after its idle timeout'), this.opts.idleTimeoutMs);
    this.idleTimer.unref();
  }

  private onData(chunk: Buffer) {
    if (this.phase === 'closed') return;
    this.inbox.push(chunk);
    for (;;) {
      // While a password is checked the socket is paused: what already arrived waits.
      if (this.isClosed() || this.phase === 'checking') return;
      if (this.phase === 'startup') {
        if (this.inbox.length < 8) return;
        const head = this.inbox.peek(8);
        const len = head.readInt32BE(0);
        if (len < 8 || len > MAX_STARTUP_BYTES) return this.refuse('08P01', 'invalid startup packet');
        if (this.inbox.length < len) return;
        const packet = this.inbox.take(len);
        const code = packet.readInt32BE(4);
        if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
          this.socket.write('N'); // no TLS on a loopback port; the client goes on in plain text
          continue;
        }
        if (code === CANCEL_REQUEST) return this.close(); // not honoured: statements end by their time limit
        if (code !== PROTOCOL_V3) return this.refuse('0A000', 'unsupported frontend protocol');
        if (!this.readStartup(packet.subarray(8))) return;
        if (this.opts.passwordDigest) {
          this.phase = 'password';
          this.socket.write(backendMessage('R', Buffer.from([0, 0, 0, 3]))); // AuthenticationCleartextPassword
        } else {
          this.authenticated();
        }
        continue;
      }
      if (this.inbox.length < 5) return;
      const head = this.inbox.peek(5);
      const type = head[0]!;
      const len = head.readInt32BE(1);
      // Bounded before a byte of the body is kept: the type and length say what may follow.
      if (this.phase === 'password') {
        if (type !== 0x70) return this.refuse('08P01', 'expected a password message');
        if (len < 5 || len > MAX_PASSWORD_BYTES) return this.refuse('08P01', 'invalid password message length');
      } else if (len < 4 || len > PSQL_MAX_MESSAGE_BYTES) {
        return this.refuse('54000', `message too long for the psql port (at most ${PSQL_MAX_MESSAGE_BYTES} bytes)`);
      }
      if (this.inbox.length < 1 + len) return;
      const message = this.inbox.take(1 + len);
      if (this.phase === 'password') {
        this.phase = 'checking';
        this.socket.pause();
        void this.checkPassword(message);
        return;
      }
      this.touch();
      if (type === 0x58) return this.close(); // Terminate
      if (!QUERY_MESSAGES.has(type))
        return this.refuse(
          '08P01',
          `unexpected message type '${String.fromCharCode(type)}' on the psql port (COPY FROM STDIN is not available)`,
        );
      this.onQueryMessage(message);
    }
  }

  /** Reads the startup parameters; false (and refused) when one is not allowed. */
  private readStartup(body: Buffer): boolean {
    const fields = body.toString('utf8').split('\0');
    for (let i = 0; i + 1 < fields.length && fields[i]; i += 2) {
      const [name, value] = [fields[i]!, fields[i + 1]!];
      if (!STARTUP_PARAMETERS.has(name)) {
        this.refuse('08P01', `startup parameter "${name}" is not accepted by the psql port (only user, database, application_name)`);
        return false;
      }
      // psql sends its terminal's encoding; the session's is UTF8 and no other is set on it.
      if (name === 'client_encoding' && !/^(utf-?8|unicode)$/i.test(value)) {
        this.refuse('08P01', 'the psql port speaks UTF8 only (set PGCLIENTENCODING=UTF8)');
        return false;
      }
      if (name === 'user') this.user = value.slice(0, 64);
    }
    return true;
  }

  private async checkPassword(message: Buffer) {
    const end = message.indexOf(0, 5);
    const given = message.subarray(5, end >= 0 ? end : message.length);
    // Compared as digests so the comparison takes the same time whatever the length.
    const ok = await this.opts.throttle.attempt(this.socket.remoteAddress ?? '?', () =>
      timingSafeEqual(digest(given), this.opts.passwordDigest!),
    );
    if (this.isClosed()) return;
    if (!ok) {
      this.log?.warn({ user: this.user, address: this.socket.remoteAddress }, 'psql port: password authentication failed');
      return this.refuse('28P01', `password authentication failed for user "${this.user}"`);
    }
    this.authenticated();
    if (this.isClosed()) return;
    this.socket.resume();
    if (this.inbox.length) this.onData(Buffer.alloc(0));
  }

  /** AuthenticationOk, the server's parameters and ReadyForQuery, answered by the port itself. */
  private authenticated() {
    if (this.authTimer) clearTimeout(this.authTimer);
    this.authTimer = null;
    if (!this.opts.admit()) return this.refuse('53300', 'too many psql clients on the embedded database');
    this.admitted = true;
    this.phase = 'ready';
    const key = Buffer.alloc(8);
    key.writeInt32BE(process.pid, 0);
    key.writeInt32BE(randomInt(2 ** 31 - 1), 4);
    this.socket.write(
      Buffer.concat([
        backendMessage('R', Buffer.alloc(4)), // AuthenticationOk
        this.opts.parameterStatus,
        backendMessage('K', key), // BackendKeyData (a CancelRequest with it is answered by closing)
        readyForQuery(0x49),
      ]),
    );
    this.touch();
  }

  private onQueryMessage(message: Buffer) {
    const type = message[0]!;
    if (this.skipToSync && type !== 0x53) return;
    if (type === 0x53 && this.skipToSync) this.skipToSync = false;
    const text = type === 0x51 ? message.subarray(5, message.indexOf(0, 5)) : type === 0x50 ? this.parseText(message) : null;
    if (text && mayCopyFromClient(text.toString('utf8'))) {
      const refusal = errorResponse('ERROR', '0A000', 'COPY FROM STDIN is not available on the embedded database (psql port); use INSERT');
      if (type === 0x50) this.skipToSync = true;
      // In order after the answers to the messages before it; a Query is answered in full here.
      this.chain = this.chain.then(() => {
        if (this.socket.writable) this.socket.write(type === 0x51 ? Buffer.concat([refusal, readyForQuery(this.status.last)]) : refusal);
      });
      return;
    }
    this.enqueue(message);
  }

  /** A Parse message's statement text (after the statement name). */
  private parseText(message: Buffer): Buffer {
    const nameEnd = message.indexOf(0, 5);
    const textEnd = message.indexOf(0, nameEnd + 1);
    return message.subarray(nameEnd + 1, textEnd < 0 ? message.length : textEnd);
  }

  private enqueue(message: Buffer) {
    this.chain = this.chain
      .then(() => this.execute(message))
      .catch((err: unknown) => {
        this.log?.warn({ err: err instanceof Error ? err.message : String(err) }, 'psql port: message failed; closing the session');
        this.close();
      });
  }

  private async execute(message: Buffer) {
    if (this.phase === 'closed') return;
    if (!this.release) {
      this.release = await this.lock.acquire();
      if (this.isClosed()) return; // the cleanup queued behind this releases it
      this.holdTimer = setTimeout(
        () => this.cutOff('25P03', 'the psql session held the embedded database longer than PGLITE_PSQL_MAX_HOLD_MS'),
        this.opts.maxHoldMs,
      );
      this.holdTimer.unref();
      this.heldSince = Date.now();
    }
    // A statement may run its own limit, and never past what is left of the hold bound.
    const holdLeft = this.opts.maxHoldMs - (Date.now() - this.heldSince);
    try {
      await this.pg.execProtocolRawStream(new Uint8Array(message), {
        timeoutMs: Math.max(1, Math.min(this.opts.statementTimeoutMs, holdLeft)),
        onRawData: (data) => {
          this.status.feed(data);
          if (data.length && this.phase !== 'closed' && this.socket.writable) this.socket.write(Buffer.from(data));
        },
      });
    } catch (err) {
      if (!(err instanceof StatementInterruptedError)) throw err;
      // The database's worker was replaced: a fresh session, with no transaction of this client's.
      this.status.reset();
      return this.cutOff(
        '57014',
        'canceling statement due to statement timeout (PGLITE_PSQL_STATEMENT_TIMEOUT_MS, or PGLITE_PSQL_MAX_HOLD_MS for a transaction); it was rolled back',
      );
    }
    // On an in-memory database a statement cannot be ended: one that ran past the bound ends the
    // session here (the client learns why) rather than letting it go on.
    if (Date.now() - this.heldSince > this.opts.maxHoldMs && !this.isClosed())
      return this.cutOff('25P03', 'the psql session held the embedded database longer than PGLITE_PSQL_MAX_HOLD_MS');
    const type = message[0];
    // A Sync or a simple Query ends a unit of work; the session goes back, restored, unless a transaction stays open.
    if ((type === 0x53 || type === 0x51) && !this.status.inTransaction && !this.isClosed()) {
      await this.restoreServiceSession();
      this.handBack();
    }
  }

  /**
   * One protocol message to PGlite from the port itself, its answers read for the status and dropped.
   */
  private async raw(message: Uint8Array) {
    await this.pg.execProtocolRawStream(message, { onRawData: (data) => this.status.feed(data) });
  }

  /**
   * The service's session as it was before the client's unit of work: see the header. Each a Query of
   * its own (DISCARD ALL cannot run in the implicit transaction of a multi-statement Query), sent as
   * protocol messages, followed for the transaction status like the client's.
   */
  private async restoreServiceSession() {
    await this.raw(simpleQuery('DISCARD ALL'));
    await this.raw(simpleQuery(`SET SESSION AUTHORIZATION ${quoteIdent(this.opts.serviceRole)}`));
    await this.raw(simpleQuery(`SELECT setseed(${(randomInt(2_000_001) - 1_000_000) / 1_000_000})`));
  }

  // A method, so TypeScript does not narrow `phase` across the awaits above.
  private isClosed() {
    return this.phase === 'closed';
  }

  private handBack() {
    if (this.holdTimer) clearTimeout(this.holdTimer);
    this.holdTimer = null;
    const release = this.release;
    this.release = null;
    release?.();
  }

  /** Tells the client why (when it still listens), then closes. */
  private cutOff(code: string, message: string) {
    if (this.phase === 'closed') return;
    this.log?.warn({ code }, `psql port: ${message}`);
    if (this.socket.writable) this.socket.write(errorResponse('FATAL', code, message));
    this.close();
  }

  private refuse(code: string, message: string) {
    if (this.socket.writable) this.socket.write(errorResponse('FATAL', code, message));
    this.close();
  }

  close() {
    if (this.phase === 'closed') return;
    const started = this.phase === 'ready';
    this.phase = 'closed';
    for (const t of [this.idleTimer, this.holdTimer, this.authTimer]) if (t) clearTimeout(t);
    this.socket.end();
    this.socket.destroySoon();
    // After the message in flight (it ends, or is ended by its time limit), reset the session.
    this.chain = this.chain
      .then(async () => {
        if (!started || !this.release) return; // it does not hold the session: restored when handed back
        // A Sync ends an unfinished extended-protocol exchange (and its error state), then the
        // transaction is rolled back and the service's session restored.
        await this.raw(SYNC);
        if (this.status.inTransaction) await this.raw(simpleQuery('ROLLBACK'));
        await this.restoreServiceSession();
      })
      .catch((err: unknown) =>
        this.log?.error({ err: err instanceof Error ? err.message : String(err) }, 'psql port: session reset failed'),
      )
      .finally(() => {
        this.handBack();
        this.resolveClosed();
      });
  }
}

/** The ParameterStatus messages a client expects at startup (psql reads server_version from them). */
async function startupParameters(pg: EmbeddedDatabase): Promise<{ parameterStatus: Buffer; serviceRole: string }> {
  const names = [
    'server_version',
    'server_encoding',
    'DateStyle',
    'IntervalStyle',
    'TimeZone',
    'integer_datetimes',
    'standard_conforming_strings',
  ];
  const res = await pg.query<{ name: string; setting: string }>(
    `SELECT name, current_setting(name) AS setting FROM unnest($1::text[]) AS name`,
    [names],
  );
  const role = (await pg.query<{ role: string }>('SELECT session_user AS role')).rows[0]!.role;
  const params: Array<[string, string]> = [
    ...res.rows.map((r) => [r.name, r.setting] as [string, string]),
    ['client_encoding', 'UTF8'],
    ['application_name', 'psql'],
    ['is_superuser', 'on'],
    ['session_authorization', role],
  ];
  return {
    parameterStatus: Buffer.concat(params.map(([k, v]) => backendMessage('S', Buffer.from(`${k}\0${v}\0`, 'utf8')))),
    serviceRole: role,
  };
}

/** Serves the embedded database on a loopback port so analysts can connect with psql. */
export async function startPsqlPort(pg: EmbeddedDatabase, lock: Mutex, opts: PsqlPortOptions, log?: Logger): Promise<PsqlPort> {
  if (!opts.trust && opts.password !== undefined && opts.password.length < PSQL_MIN_PASSWORD_LENGTH)
    throw new Error(`the psql port's password must be at least ${PSQL_MIN_PASSWORD_LENGTH} characters`);
  const password = opts.trust ? null : (opts.password ?? randomBytes(18).toString('base64url'));
  const maxConnections = opts.maxConnections ?? 4;
  const connections = new Set<PsqlConnection>();
  const startup = await lock.runExclusive(() => startupParameters(pg));
  const settings: ConnectionSettings = {
    passwordDigest: password === null ? null : digest(password),
    maxHoldMs: opts.maxHoldMs ?? 60_000,
    statementTimeoutMs: opts.statementTimeoutMs ?? 10_000,
    idleTimeoutMs: opts.idleTimeoutMs ?? 5 * 60_000,
    authTimeoutMs: opts.authTimeoutMs ?? AUTH_TIMEOUT_MS,
    throttle: new PasswordThrottle(opts.failedPasswordDelayMs ?? 250),
    ...startup,
    admit: () => [...connections].filter((c) => c.admitted).length < maxConnections,
  };
  const server = net.createServer((socket) => {
    if (connections.size - [...connections].filter((c) => c.admitted).length >= MAX_PENDING) {
      socket.end(errorResponse('FATAL', '53300', 'too many unauthenticated connections to the psql port'));
      return;
    }
    const c = new PsqlConnection(socket, pg, lock, settings, log);
    connections.add(c);
    void c.closed.then(() => connections.delete(c));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => log?.warn({ err: err.message }, 'psql port: server error'));
  const address = server.address();
  const bound = typeof address === 'object' && address ? address.port : opts.port;
  const auth = password === null ? 'postgres' : `postgres:${encodeURIComponent(password)}`;
  return {
    url: `postgresql://${auth}@127.0.0.1:${bound}/postgres?sslmode=disable`,
    port: bound,
    password,
    stop: async () => {
      const closing = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const c of connections) c.close();
      await Promise.all([...connections].map((c) => c.closed));
      await closing;
    },
  };
}
