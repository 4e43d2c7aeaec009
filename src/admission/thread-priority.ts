/**
 * Serving before computing: the threads that decode photos (the libuv pool sharp runs on, and libvips'
 * own workers) and run the model (the inference and preprocessing worker threads) run at a lower CPU
 * priority, a higher nice value (COMPUTE_THREAD_NICE), than the main thread, which answers every request,
 * and the database.
 *
 * Why: on a 2-core machine a flood of phone photos keeps both cores busy decoding; at equal priority each
 * hop of a cheap `similarProducts(productId)` (main thread → PostgreSQL → main thread) waits behind them
 * for a time slice (issue 23, BENCHMARKS.md "Reliability"). Niced, the compute threads get what serving
 * leaves: the scheduler runs the main thread and the database first when they have work, and the photos
 * still use every idle cycle. The admission gates bound how much photo work is admitted; this decides who
 * runs first among what was admitted.
 *
 * Linux only. There the nice value belongs to a thread (setpriority(2), "BUGS"): a thread can lower
 * itself, another thread can be lowered by its thread id, and a thread inherits its creator's value (so
 * ONNX Runtime's intra-op threads, created by a lowered inference worker, and libvips' workers, created
 * by a lowered pool thread, are lowered too). Elsewhere `setpriority(PRIO_PROCESS, 0)` lowers the whole
 * process, main thread included, so nothing is done there.
 *
 * Not lowered: the main thread, the embedded database's worker thread (it is the database), V8's own
 * threads. The libuv pool also does file reads and DNS lookups; lowered, those yield to serving as well
 * (the static storefront files come from memory after their first read; the database connects by address
 * in the defaults).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { setPriority } from 'node:os';

/** What the libuv pool's threads (named by Node 22 and 24, not by Node 20) and libvips' workers are called. */
const COMPUTE_THREAD_NAMES = [/^libuv-worker$/, /^libvips/];

const lowers = (nice: number) => process.platform === 'linux' && nice > 0;

let processNice = 0;

/** The nice value this process gives its compute threads (set by lowerComputeThreads; 0 before). */
export const computeThreadNice = (): number => processNice;

/** Lowers the calling thread (a worker thread at its start) to `nice`; returns whether it did. */
export function lowerThisThread(nice: number): boolean {
  if (!lowers(nice)) return false;
  try {
    setPriority(nice); // pid 0: on Linux, this thread only
    return true;
  } catch {
    return false; // a container's seccomp profile may refuse it; serving goes on at equal priority
  }
}

export interface LoweredThreads {
  /** Threads lowered now (the libuv pool's and libvips' that exist). */
  lowered: number;
  /** Why none was, where none was. */
  reason?: string;
}

/**
 * Sets this process's compute-thread nice value (threads started later, such as the payload worker, take
 * it from computeThreadNice) and lowers the decode threads to it: makes sure the libuv pool and libvips'
 * workers exist (one tiny decode), then finds them by name among the process's threads. Threads they
 * create later inherit the value. Call once at the service's start.
 */
export async function lowerComputeThreads(nice: number): Promise<LoweredThreads> {
  processNice = nice;
  if (!lowers(nice)) return { lowered: 0, reason: nice > 0 ? `not on ${process.platform}` : 'COMPUTE_THREAD_NICE is 0' };
  const { default: sharp } = await import('sharp'); // not at the top: the worker threads import this file too
  await sharp({ create: { width: 8, height: 8, channels: 3, background: '#808080' } })
    .png()
    .toBuffer()
    .then((png) => sharp(png).raw().toBuffer());
  let lowered = 0;
  for (const tid of readdirSync('/proc/self/task')) {
    let name: string;
    try {
      name = readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim();
    } catch {
      continue; // the thread ended meanwhile
    }
    if (!COMPUTE_THREAD_NAMES.some((re) => re.test(name))) continue;
    try {
      setPriority(Number(tid), nice);
      lowered++;
    } catch {
      // refused (seccomp) or gone: the others are still worth lowering
    }
  }
  // Node 20's libuv leaves its pool threads unnamed: they cannot be told from the main thread by name.
  return lowered ? { lowered } : { lowered, reason: 'no thread named libuv-worker or libvips* (Node < 22?)' };
}
