/**
 * The psql port's COPY FROM STDIN check (src/db/psql-statements.ts): it must see the keywords wherever
 * PostgreSQL would (any case, around comments) and not inside literals, quoted identifiers or comments.
 * The lexical forms are PostgreSQL's ("SQL Syntax: Lexical Structure").
 */
import { describe, expect, it } from 'vitest';
import { mayCopyFromClient } from '../../src/db/psql-statements.js';

describe('COPY FROM STDIN detection on the psql port', () => {
  it.each([
    'COPY ct FROM STDIN',
    'copy ct from stdin',
    '/* a /* nested */ comment */ CoPy "my table" (x) FROM stdin WITH (FORMAT csv)',
    "select 1; copy ct from stdin; select 'x'",
    'copy ct -- the table\n from stdin',
  ])('refuses %j', (text) => expect(mayCopyFromClient(text)).toBe(true));

  it.each([
    'COPY (SELECT 1) TO STDOUT',
    "SELECT 'copy from stdin'",
    'SELECT "copy", "stdin" FROM t',
    'SELECT $$copy ct from stdin$$',
    'SELECT $tag$ copy $$ stdin $tag$',
    "SELECT E'it\\'s copy from stdin'",
    '-- copy ct from stdin\nSELECT 1',
  ])('lets %j through', (text) => expect(mayCopyFromClient(text)).toBe(false));
});
