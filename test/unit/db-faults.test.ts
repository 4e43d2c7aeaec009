import { describe, expect, it } from 'vitest';
import { databaseFault, databaseFaultError, dbErrorFields } from '../../src/db/faults.js';
import { AppError, ErrorCode } from '../../src/errors.js';

const withCode = (code: string, message = 'x') => Object.assign(new Error(message), { code });

describe('database fault classifier', () => {
  it('maps connection failures to DATABASE_UNAVAILABLE', () => {
    for (const err of [
      withCode('ECONNREFUSED'),
      withCode('ECONNRESET'),
      withCode('57P01', 'terminating connection due to administrator command'),
      withCode('57P03', 'the database system is shutting down'),
      new Error('Connection terminated unexpectedly'),
      new Error('timeout exceeded when trying to connect'),
      new AggregateError([withCode('ECONNREFUSED')], 'connect failed'),
      new Error('wrapped', { cause: withCode('ECONNREFUSED') }),
    ]) {
      expect(databaseFault(err)).toBe('unavailable');
      expect(databaseFaultError(err)?.code).toBe(ErrorCode.DATABASE_UNAVAILABLE);
    }
  });

  it('maps statement_timeout to TIMEOUT and leaves everything else alone', () => {
    expect(databaseFaultError(withCode('57014', 'canceling statement due to statement timeout'))?.code).toBe(ErrorCode.TIMEOUT);
    expect(databaseFaultError(withCode('23505', 'duplicate key'))).toBeNull();
    expect(databaseFaultError(new Error('boom'))).toBeNull();
    expect(databaseFaultError(new AppError(ErrorCode.NOT_FOUND, 'no'))).toBeNull();
  });

  it('logs only message and codes, never an attached client', () => {
    const err = Object.assign(withCode('ECONNRESET', 'read ECONNRESET'), { client: { connectionString: 'postgres://u:secret@h/db' } });
    expect(dbErrorFields(err)).toEqual({ message: 'read ECONNRESET', code: 'ECONNRESET' });
  });
});
