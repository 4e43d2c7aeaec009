import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, currentLog, runWithLog } from '../../src/log.js';

function sink() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  return { lines, stream: Object.assign(stream, { write: stream.write.bind(stream) }) };
}

describe('logs', () => {
  it('JSON for machines, with credentials redacted', () => {
    const { lines, stream } = sink();
    const log = createLogger('info', { format: 'json', destination: stream });
    log.info({ req: { headers: { authorization: 'Bearer s3cret', cookie: 'a=b' } }, cfg: { adminToken: 'tok', password: 'pw' } }, 'hello');
    const line = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(line.msg).toBe('hello');
    expect(lines[0]).not.toMatch(/s3cret|a=b|"tok"|"pw"/);
  });

  it('one human line per entry when pretty, with the request id', async () => {
    const { lines, stream } = sink();
    const log = createLogger('info', { format: 'pretty', destination: stream }).child({ reqId: 'req-7' });
    log.info({ code: 'BAD_USER_INPUT' }, 'request rejected');
    await new Promise((r) => setImmediate(r));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/INFO.*request rejected.*reqId.*req-7.*BAD_USER_INPUT/);
    expect(lines[0]).not.toMatch(/^\{/);
  });

  it('the current request logger is the one a request runs with', async () => {
    const base = createLogger('silent');
    const child = base.child({ reqId: 'r1' });
    expect(currentLog(base)).toBe(base);
    await runWithLog(child, async () => {
      await new Promise((r) => setTimeout(r, 1));
      expect(currentLog(base)).toBe(child);
    });
  });
});
