/**
 * The embedded database's psql port for analysts: a small PostgreSQL wire-protocol front for PGlite.
 *
 * Why not @electric-sql/pglite-socket as is: it hands the StartupMessage straight to PGlite, which
 * accepts anyone (it has no authentication, and the socket server no hook for one), a client that
 * leaves keeps whatever it SET for the service's session, and a client that opens a transaction holds
 * the single session for as long as it likes. So this module speaks the few protocol messages that
 * matter before PGlite sees any (SSLRequest, StartupMessage, PasswordMessage) and passes every later
 * message to PGlite under the service's session lock, as the socket server did:
 *
 * - a password is required (cleartext password authentication: the port listens on loopback only, so
 *   the password never leaves the machine, and every client speaks it), unless `trust` is asked for;
 * - the lock is taken per message and kept until a Sync or simple Query leaves no transaction open, so
 *   app statements never run inside a psql transaction or between an extended-protocol Parse and Sync;
 * - one client holds the lock at most `maxHoldMs` at a stretch: past it, it is cut off (FATAL 25P03);
 * - when a client leaves, by Terminate, a dropped socket, idle timeout or being cut off, its transaction
 *   is rolled back and its session state reset (DISCARD ALL: settings, role, prepared statements, temp
 *   tables, advisory locks) before the service uses the session again.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import net from 'node:net';
import type { PGlite } from '@electric-sql/pglite';
import type { Mutex } from 'async-mutex';
import type { Logger } from '../log.js';

export interface PsqlPortOptions {
  /** Loopback port (0: any free one). */
  port: number;
  /** The password clients must send; unset: a random one is generated (see the returned `password`). */
  password?: string | undefined;
  /** No password at all (local development only). */
  trust?: boolean;
  /** The longest one client may hold the session at a stretch (an open transaction); default 60 s. */
  maxHoldMs?: number;
  /** A client silent this long is closed; default 5 minutes. */
  idleTimeoutMs?: number;
  maxConnections?: number;
}

export interface PsqlPort {
  /** Connection URL, password included. */
  url: string;
  port: number;
  /** The password in force (null under trust). */
  password: string | null;
  stop(): Promise<void>;
}

const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const CANCEL_REQUEST = 80877102;
const PROTOCOL_V3 = 196608;
const SYNC = Uint8Array.from([0x53, 0, 0, 0, 4]); // 'S', length 4
const MAX_STARTUP_BYTES = 10_000;

function errorResponse(severity: 'FATAL' | 'ERROR', code: string, message: string): Buffer {
  const fields = Buffer.concat([Buffer.from(`S${severity}\0V${severity}\0C${code}\0M${message}\0`, 'utf8'), Buffer.from([0])]);
  const head = Buffer.alloc(5);
  head.write('E', 0);
  head.writeInt32BE(4 + fields.length, 1);
  return Buffer.concat([head, fields]);
}

/** A simple-protocol Query message. */
function simpleQuery(text: string): Uint8Array {
  const body = Buffer.from(`${text}\0`, 'utf8');
  const head = Buffer.alloc(5);
  head.write('Q', 0);
  head.writeInt32BE(4 + body.length, 1);
  return new Uint8Array(Buffer.concat([head, body]));
}

/**
 * Follows PGlite's answers (a stream of typed messages, split anywhere) to the last ReadyForQuery's
 * status byte: 'I' idle, 'T' in a transaction, 'E' in a failed one. PGlite.isInTransaction() cannot be
 * used here: it tracks only what goes through PGlite's own query()/exec(), not raw protocol messages.
 */
class TransactionStatus {
  private header = Buffer.alloc(0);
  private remaining = 0;
  private wantStatus = false;
  private last = 0x49; // 'I'

  get inTransaction() {
    return this.last !== 0x49;
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

const digest = (s: string | Buffer) => createHash('sha256').update(s).digest();

class PsqlConnection {
  private buffer = Buffer.alloc(0);
  private phase: 'startup' | 'password' | 'ready' | 'closed' = 'startup';
  private startup: Buffer | null = null;
  private user = 'postgres';
  /** Messages run one after another, in order. */
  private chain: Promise<void> = Promise.resolve();
  private release: (() => void) | null = null;
  private readonly status = new TransactionStatus();
  private holdTimer: NodeJS.Timeout | null = null;
  private idleTimer: NodeJS.Timeout | null = null;
  /** Resolves once the session is rolled back, reset and handed back. */
  readonly closed: Promise<void>;
  private resolveClosed!: () => void;

  constructor(
    private readonly socket: net.Socket,
    private readonly pg: PGlite,
    private readonly lock: Mutex,
    private readonly opts: { passwordDigest: Buffer | null; maxHoldMs: number; idleTimeoutMs: number },
    private readonly log: Logger | undefined,
  ) {
    this.closed = new Promise((r) => (this.resolveClosed = r));
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      this.touch();
      this.onData(chunk);
    });
    socket.on('error', () => this.close()); // ECONNRESET and the like: the client went away
    socket.on('close', () => this.close());
    this.touch();
  }

  private touch() {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => this.cutOff('57P05', 'closing the psql session after its idle timeout'), this.opts.idleTimeoutMs);
    this.idleTimer.unref();
  }

  private onData(chunk: Buffer) {
    if (this.phase === 'closed') return;
    this.buffer = Buffer.concat([this.buffer, chunk]);
    for (;;) {
      if (this.phase === 'startup') {
        if (this.buffer.length < 8) return;
        const len = this.buffer.readInt32BE(0);
        if (len < 8 || len > MAX_STARTUP_BYTES) return this.refuse('08P01', 'invalid startup packet');
        if (this.buffer.length < len) return;
        const packet = this.buffer.subarray(0, len);
        this.buffer = this.buffer.subarray(len);
        const code = packet.readInt32BE(4);
        if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
          this.socket.write('N'); // no TLS on a loopback port; the client goes on in plain text
          continue;
        }
        if (code === CANCEL_REQUEST) return this.close(); // cancelling a running PGlite statement is not possible
        if (code !== PROTOCOL_V3) return this.refuse('0A000', 'unsupported frontend protocol');
        this.startup = Buffer.from(packet);
        const params = packet.subarray(8).toString('utf8').split('\0');
        const i = params.indexOf('user');
        if (i >= 0 && params[i + 1]) this.user = params[i + 1]!;
        if (this.opts.passwordDigest) {
          this.phase = 'password';
          this.socket.write(Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 3])); // AuthenticationCleartextPassword
        } else {
          this.phase = 'ready';
          this.enqueue(this.startup);
        }
        continue;
      }
      if (this.buffer.length < 5) return;
      const len = this.buffer.readInt32BE(1);
      if (len < 4) return this.refuse('08P01', 'invalid message length');
      if (this.buffer.length < 1 + len) return;
      const message = Buffer.from(this.buffer.subarray(0, 1 + len));
      this.buffer = this.buffer.subarray(1 + len);
      const type = String.fromCharCode(message[0]!);
      if (this.phase === 'password') {
        if (type !== 'p') return this.refuse('28000', 'expected a password message');
        const given = message.subarray(5, message.indexOf(0, 5) >= 0 ? message.indexOf(0, 5) : message.length);
        // Compared as digests so the comparison takes the same time whatever the length.
        if (!timingSafeEqual(digest(given), this.opts.passwordDigest!)) {
          this.log?.warn({ user: this.user }, 'psql port: password authentication failed');
          return this.refuse('28P01', `password authentication failed for user "${this.user}"`);
        }
        this.phase = 'ready';
        this.enqueue(this.startup!); // PGlite answers AuthenticationOk, parameters and ReadyForQuery
        continue;
      }
      if (type === 'X') return this.close(); // Terminate
      this.enqueue(message);
    }
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
    }
    await this.pg.runExclusive(() =>
      this.pg.execProtocolRawStream(new Uint8Array(message), {
        onRawData: (data) => {
          this.status.feed(data);
          if (data.length && this.phase !== 'closed' && this.socket.writable) this.socket.write(Buffer.from(data));
        },
      }),
    );
    const type = message[0];
    // A Sync or a simple Query ends a unit of work; the lock goes back unless a transaction stays open.
    const unitEnded = type === 0x53 || type === 0x51 || message === this.startup;
    if (unitEnded && !this.status.inTransaction) this.handBack();
  }

  /** One protocol message to PGlite from the cleanup, its answers read for the status and dropped. */
  private async raw(message: Uint8Array) {
    this.status.feed(await this.pg.execProtocolRaw(message));
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
    if (this.idleTimer) clearTimeout(this.idleTimer);
    if (this.holdTimer) clearTimeout(this.holdTimer);
    this.socket.end();
    this.socket.destroySoon();
    // After the message in flight (a PGlite statement cannot be interrupted), reset the session.
    this.chain = this.chain
      .then(async () => {
        if (!started) return;
        this.release ??= await this.lock.acquire();
        await this.pg.runExclusive(async () => {
          // A Sync ends an unfinished extended-protocol exchange (and its error state); then no
          // transaction and no session state of this client survive it. Sent as protocol messages:
          // PGlite's exec() takes the same PGlite-internal lock and would wait for this one forever.
          await this.raw(SYNC);
          if (this.status.inTransaction) await this.raw(simpleQuery('ROLLBACK'));
          await this.raw(simpleQuery('DISCARD ALL'));
        });
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

/** Serves the embedded database on a loopback port so analysts can connect with psql. */
export async function startPsqlPort(pg: PGlite, lock: Mutex, opts: PsqlPortOptions, log?: Logger): Promise<PsqlPort> {
  const password = opts.trust ? null : (opts.password ?? randomBytes(18).toString('base64url'));
  const settings = {
    passwordDigest: password === null ? null : digest(password),
    maxHoldMs: opts.maxHoldMs ?? 60_000,
    idleTimeoutMs: opts.idleTimeoutMs ?? 5 * 60_000,
  };
  const maxConnections = opts.maxConnections ?? 4;
  const connections = new Set<PsqlConnection>();
  await pg.waitReady;
  const server = net.createServer((socket) => {
    if (connections.size >= maxConnections) {
      socket.end(errorResponse('FATAL', '53300', 'too many psql clients on the embedded database'));
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
