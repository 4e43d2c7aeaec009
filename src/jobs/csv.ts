/**
 * CSV catalog records, streamed through csv-parse (RFC 4180: quoted fields, doubled quotes, newlines in
 * quotes; CRLF, LF or a lone CR ends a record). Each record comes with the line it starts on; a malformed
 * record is one error at its line, and the records after it still come.
 */
import type { Readable } from 'node:stream';
import { parse, type CsvError, type Info, type Options } from 'csv-parse';
import { parse as parseStrict } from 'csv-parse/sync';

export type CsvRecord = { line: number; fields: string[] } | { line: number; error: string };

const LINE_BREAK = /\r\n|\r|\n/g;
const breaks = (s: string) => s.match(LINE_BREAK)?.length ?? 0;

/** The options both parses share: a lone CR is a record delimiter too, so line numbers stay right. */
const COMMON: Options = { bom: true, record_delimiter: ['\r\n', '\n', '\r'], relax_column_count: true, skip_empty_lines: true };

/**
 * The records of `input` in file order, the header first. Quotes are relaxed so that a bad quote stays
 * inside its record (strict csv-parse loses the rest of the file after one); such a record is then
 * parsed again strictly, and its strict error reported for that line alone.
 */
export async function* readCsv(input: Readable | string): AsyncGenerator<CsvRecord> {
  const skipped: Array<{ line: number; error: string }> = [];
  let lastEnd = 0; // the line the last parsed record ended on (the parser runs ahead of the consumer)
  const options: Options<string[], string[]> = {
    ...COMMON,
    relax_quotes: true,
    skip_records_with_error: true,
    info: true,
    raw: true,
    on_record: (record, context) => {
      lastEnd = context.lines;
      return record;
    },
    // Only an unterminated quote remains an error once quotes are relaxed: it runs to the end of the file.
    on_skip: (err: CsvError | undefined) => {
      if (err) skipped.push({ line: lastEnd + 1, error: csvMessage(err) });
      return undefined;
    },
  };
  const parser = parse(options);
  if (typeof input === 'string') parser.end(input);
  else input.pipe(parser);
  for await (const chunk of parser as AsyncIterable<{ record: string[]; info: Info; raw: string }>) {
    const { record, info, raw } = chunk;
    // info.lines is where the record ends; leading blank lines and the delimiter are not part of it.
    const body = raw.replace(/^(?:\r\n|\r|\n)+/, '').replace(/(?:\r\n|\r|\n)$/, '');
    const line = info.lines - breaks(body);
    yield* drain(skipped, line);
    const strictError = body.includes('"') ? strictProblem(body) : null;
    yield strictError ? { line, error: strictError } : { line, fields: record };
  }
  yield* drain(skipped, Infinity);
}

function* drain(skipped: Array<{ line: number; error: string }>, before: number): Generator<CsvRecord> {
  while (skipped.length && skipped[0]!.line < before) yield skipped.shift()!;
}

/** Why a record with quotes is not well-formed CSV, or null when it is. */
function strictProblem(body: string): string | null {
  try {
    parseStrict(body, COMMON);
    return null;
  } catch (err) {
    return csvMessage(err as CsvError);
  }
}

/** The record's line is reported beside the message, so the message names none (csv-parse's would be off). */
function csvMessage(err: CsvError): string {
  switch (err.code) {
    case 'CSV_QUOTE_NOT_CLOSED':
      return 'unterminated quoted field (it runs to the end of the file)';
    case 'CSV_INVALID_CLOSING_QUOTE':
      return 'a closing quote must be followed by a comma or the end of the line';
    default:
      return err.message.replace(/ at line \d+/, '');
  }
}
