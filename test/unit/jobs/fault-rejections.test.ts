/**
 * pg-boss 10 does not await its job completion calls, so a database outage at that moment surfaces as an
 * unhandled rejection. The guard installed with the queue absorbs exactly those (database faults) and
 * leaves every other unhandled rejection fatal, as Node's default is. Each case runs in its own process.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

function runWithGuard(rejection: string): { status: number | null; stdout: string; stderr: string } {
  // 'guard installed' proves the child loaded and installed the guard: a child that fails to load also
  // exits non-zero without 'still alive', which must not pass for "kept fatal".
  const script = `
    import { absorbDatabaseFaultRejections } from './src/jobs/boss.ts';
    absorbDatabaseFaultRejections((err) => console.log('absorbed: ' + err.message));
    console.log('guard installed');
    void Promise.reject(${rejection});
    setTimeout(() => console.log('still alive'), 200);
  `;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('unhandled rejections of background queue calls', () => {
  it('absorbs a database fault (the connection reset while the server restarts): the process lives on', () => {
    const r = runWithGuard(`Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })`);
    expect(r.stdout).toContain('guard installed');
    expect(r.stdout).toContain('absorbed: read ECONNRESET');
    expect(r.stdout).toContain('still alive');
    expect(r.status).toBe(0);
  });

  it('keeps any other unhandled rejection fatal', () => {
    const r = runWithGuard(`new Error('a bug')`);
    expect(r.stdout).toContain('guard installed');
    expect(r.stdout).not.toContain('absorbed');
    expect(r.stdout).not.toContain('still alive');
    // Node's own end for an unhandled rejection: the error printed, exit code 1.
    expect(r.stderr).toContain('Error: a bug');
    expect(r.status).toBe(1);
  });
});
