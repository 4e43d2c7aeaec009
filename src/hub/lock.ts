/**
 * The hub cache's cross-process lock: one writer per blob, so two fetches on one cache (two replicas
 * starting on a shared volume, or a fetch beside a running service) download each file once and never
 * append to the same `.incomplete`.
 */
import { hostname } from 'node:os';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AppError, ErrorCode } from '../errors.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Whether the process a lock file names still runs (same host only; another host's lock is trusted). */
function lockHolderAlive(content: string): boolean {
  const [host, pidText] = content.trim().split(' ');
  const pid = Number(pidText);
  if (!host) return false; // an empty file: a writer that died between create and write
  if (host !== hostname()) return true; // another machine's process cannot be checked from here
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // alive, someone else's
  }
}

/**
 * One writer per blob: two fetches of the same file (two replicas starting on one shared cache) must not
 * append to the same `.incomplete`. An exclusive-create file beside huggingface_hub's `.locks/` entries
 * (its `filelock` uses flock(2), which Node cannot take; its lock files stay behind, so sharing their
 * names would block on them), holding host and pid so that the lock of a killed process is taken over.
 */
export async function withBlobLock<T>(lockDir: string, name: string, work: () => Promise<T>, waitMs = 30 * 60_000): Promise<T> {
  await mkdir(lockDir, { recursive: true });
  const lock = join(lockDir, `${name}.vps-lock`);
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      await writeFile(lock, `${hostname()} ${process.pid}`, { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = await readFile(lock, 'utf8').catch(() => null);
      if (holder !== null && !lockHolderAlive(holder)) {
        await rm(lock, { force: true }); // its process is gone: its .incomplete is resumed below
        continue;
      }
      if (Date.now() > deadline) {
        throw new AppError(
          ErrorCode.MODEL_UNAVAILABLE,
          `Another fetch holds ${lock} (${holder ?? '?'}); remove it if no fetch is running`,
          { lock },
        );
      }
      await sleep(250);
    }
  }
  try {
    return await work();
  } finally {
    await rm(lock, { force: true });
  }
}
