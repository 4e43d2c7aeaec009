/**
 * What the psql port (psql-port.ts) reads of an analyst's SQL before PGlite sees it: whether it is a
 * COPY … FROM STDIN. PGlite cannot take COPY data over its raw protocol: entering COPY IN mode ends
 * the whole WASM instance (exit(1)) or spins it at 100 % CPU, so that statement must never reach it.
 *
 * COPY from the client can only come as a top-level statement of a simple Query or a Parse: PostgreSQL
 * itself refuses it inside functions (SQL and PL/pgSQL), and PREPARE cannot prepare it. So looking at
 * those two messages suffices. The check is lexical and errs on refusing: a statement text holding the
 * keywords COPY and STDIN outside string literals, quoted identifiers and comments is refused, even in
 * the unlikely case that it was not a COPY FROM STDIN. COPY … TO STDOUT (psql's `\copy … to`) works.
 *
 * Hand-written rather than a SQL parser library: the only one that parses PostgreSQL's grammar exactly
 * (libpg-query) is a native/WASM build of PostgreSQL's parser, a large dependency for two keywords, and
 * a tokenizer that knows PostgreSQL's literal and comment forms is all this needs.
 */

/**
 * The bare words of a statement text, lower-cased: what is left once string literals ('…', E'…',
 * $tag$…$tag$), quoted identifiers ("…") and comments (-- and nested /* *\/) are skipped. The forms
 * are PostgreSQL's lexical structure (documentation, "SQL Syntax: Lexical Structure").
 */
export function bareWords(sqlText: string): Set<string> {
  const words = new Set<string>();
  const s = sqlText;
  let i = 0;
  while (i < s.length) {
    const c = s[i]!;
    if (c === '-' && s[i + 1] === '-') {
      const end = s.indexOf('\n', i);
      i = end < 0 ? s.length : end + 1;
    } else if (c === '/' && s[i + 1] === '*') {
      let depth = 1;
      i += 2;
      while (i < s.length && depth > 0) {
        if (s[i] === '/' && s[i + 1] === '*') {
          depth++;
          i += 2;
        } else if (s[i] === '*' && s[i + 1] === '/') {
          depth--;
          i += 2;
        } else i++;
      }
    } else if (c === "'" || c === '"') {
      // A doubled quote inside is the quote itself; E'' strings may escape it as \' too.
      const escapes = c === "'" && i > 0 && /[eE]/.test(s[i - 1]!) && !/\w/.test(s[i - 2] ?? ' ');
      i++;
      while (i < s.length) {
        if (escapes && s[i] === '\\') i += 2;
        else if (s[i] === c && s[i + 1] === c) i += 2;
        else if (s[i] === c) break;
        else i++;
      }
      i++;
    } else if (c === '$' && /^\$(?:[A-Za-z_][A-Za-z_0-9]*)?\$/.test(s.slice(i, i + 64))) {
      const tag = /^\$(?:[A-Za-z_][A-Za-z_0-9]*)?\$/.exec(s.slice(i, i + 64))![0];
      const end = s.indexOf(tag, i + tag.length);
      i = end < 0 ? s.length : end + tag.length;
    } else if (/[A-Za-z_\u0080-\uffff]/.test(c)) {
      let j = i + 1;
      while (j < s.length && /[A-Za-z_0-9$\u0080-\uffff]/.test(s[j]!)) j++;
      words.add(s.slice(i, j).toLowerCase());
      i = j;
    } else {
      i++;
    }
  }
  return words;
}

/** Whether a statement text may be a COPY … FROM STDIN (see above: errs on yes). */
export function mayCopyFromClient(sqlText: string): boolean {
  const words = bareWords(sqlText);
  return words.has('copy') && words.has('stdin');
}
