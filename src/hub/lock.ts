/**
 * The hub cache's cross-process lock: one writer per blob, so two fetches on one cache (two replicas
 * starting on a shared volume, or a fetch beside a running service) download each file once and never
 * append to the same `.incomplete`.
 */
import { hostname } from 'node:os';
import { link, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AppError, ErrorCode } from '../errors.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Whether the process a lock file names still runs (same host only; another host's lock is trusted). */
function lockHolderAlive(content: string): boolean {
  const [host, pidText] = content.trim().split(' ');
  const pid = Number(pidText);
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
 *
 * The lock appears with its content in one step (written to a private file, then hard-linked to the lock's
 * name, which fails if it exists), so no reader ever sees it empty; a dead holder's lock is taken over by
 * renaming it away first, so two fetches that both found it dead cannot both remove it and one of them
 * remove the other's new lock (both seen under load: two fetches wrote the same `.incomplete`).
 */
export async function withBlobLock<T>(lockDir: string, name: string, work: () => Promise<T>, waitMs = 30 * 60_000): Promise<T> {
  await mkdir(lockDir, { recursive: true });
  const lock = join(lockDir, `${name}.vps-lock`);
  const mine = `${hostname()} ${process.pid}`;
  const unique = () => `${lock}.${process.pid}.${Math.random().toString(36).slice(2)}`;
  const deadline = Date.now() + waitMs;
  for (;;) {
    const draft = unique();
    await writeFile(draft, mine);
    try {
      await link(draft, lock); // atomic: the lock exists whole, or not at all
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    } finally {
      await rm(draft, { force: true });
    }
    const holder = await readFile(lock, 'utf8').catch(() => null);
    // an empty lock is a writer that died between create and write (earlier versions wrote in two steps):
    // dead once it is a few seconds old
    const empty = holder !== null && !holder.trim();
    const emptyAndOld = empty && Date.now() - ((await stat(lock).catch(() => null))?.mtimeMs ?? Date.now()) > 5_000;
    if (holder !== null && (emptyAndOld || (!empty && !lockHolderAlive(holder)))) {
      // its process is gone: take the lock over (its .incomplete is resumed by the caller)
      const away = unique();
      const taken = await rename(lock, away).then(
        () => true,
        () => false, // another fetch took it over first
      );
      if (taken) {
        const what = await readFile(away, 'utf8').catch(() => null);
        // what we renamed is the dead holder's lock unless another fetch replaced it in between: put that back
        if (what !== holder) await link(away, lock).catch(() => {});
        await rm(away, { force: true });
      }
      continue;
    }
    if (Date.now() > deadline) {
      throw new AppError(ErrorCode.MODEL_UNAVAILABLE, `Another fetch holds ${lock} (${holder ?? '?'}); remove it if no fetch is running`, {
        lock,
      });
    }
    await sleep(250);
  }
  try {
    return await work();
  } finally {
    await rm(lock, { force: true });
  }
}
