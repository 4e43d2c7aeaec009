/** DATABASE_READ_URL is parsed and refused where it cannot work; LSNs compare as the server orders them. */
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';
import { parseLsn } from '../../src/db/read-routing.js';

const primary = 'postgres://vps:secret@127.0.0.1:5432/vps';

describe('DATABASE_READ_URL', () => {
  it('takes one or more comma-separated replica URLs for the primary named by DATABASE_URL', () => {
    const c = loadConfig({ DATABASE_URL: primary, DATABASE_READ_URL: ' postgres://a@r1:5432/vps , postgresql://a@r2/vps ' });
    expect(c.database.kind === 'postgres' && c.database.readUrls).toEqual(['postgres://a@r1:5432/vps', 'postgresql://a@r2/vps']);
    const none = loadConfig({ DATABASE_URL: primary });
    expect(none.database.kind === 'postgres' && none.database.readUrls).toEqual([]);
  });

  it('is refused with the embedded database, which has no replicas', () => {
    expect(() => loadConfig({ DATABASE_READ_URL: 'postgres://a@r1/vps' })).toThrow(ConfigError);
    expect(() => loadConfig({ DATABASE_READ_URL: 'postgres://a@r1/vps' })).toThrow(/DATABASE_READ_URL: needs DATABASE_URL/);
  });

  it('names the setting, never the value, when a URL is not a PostgreSQL one', () => {
    let message = '';
    try {
      loadConfig({ DATABASE_URL: primary, DATABASE_READ_URL: 'postgres://a@r1/vps,mysql://user:hunter2@r2/vps' });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/DATABASE_READ_URL/);
    expect(message).not.toMatch(/hunter2/);
  });
});

describe('parseLsn', () => {
  it('orders positions as PostgreSQL does (high word, then low word, hexadecimal)', () => {
    expect(parseLsn('0/3000000')).toBe(0x3000000n);
    expect(parseLsn('16/B374D848')).toBe((0x16n << 32n) + 0xb374d848n);
    expect(parseLsn('1/0') > parseLsn('0/FFFFFFFF')).toBe(true);
    expect(() => parseLsn('nonsense')).toThrow();
  });
});
