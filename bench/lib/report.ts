/** Statistics and table printing shared by the benchmarks. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';

export const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

export const percentile = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

/** Prints a Markdown table (so a run's output can be pasted into BENCHMARKS.md as it is). */
export function table(title: string, rows: Record<string, string | number>[]): void {
  console.log(`\n### ${title}\n`);
  if (!rows.length) return;
  const cols = Object.keys(rows[0]!);
  const fmt = (v: string | number) => (typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(v < 10 ? 2 : 1)) : v);
  console.log(`| ${cols.join(' | ')} |`);
  console.log(`|${cols.map(() => '---').join('|')}|`);
  for (const r of rows) console.log(`| ${cols.map((c) => fmt(r[c] ?? '')).join(' | ')} |`);
}

export function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

export const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

/** The SIMD flags that decide distance and inference speed (pgvector's halfvec distances, ONNX Runtime's kernels). */
const SIMD_FLAGS = ['sse4_2', 'avx', 'avx2', 'fma', 'f16c', 'avx512f', 'avx512bw', 'avx512_vnni', 'avx512_bf16', 'avx512_fp16', 'amx_tile'];

/**
 * The machine a run's figures belong to: load average at the start, cores, CPU model and its SIMD flags
 * (from `lscpu`, else /proc/cpuinfo), so that figures from different machines or a loaded one are not compared.
 */
export function printMachine(): void {
  const load = os
    .loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
  let flags: string[] = [];
  let model = os.cpus()[0]?.model ?? 'unknown CPU';
  try {
    const out = execFileSync('lscpu', { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    flags = /^Flags:\s*(.*)$/m.exec(out)?.[1]?.split(/\s+/) ?? [];
    model = /^Model name:\s*(.*)$/m.exec(out)?.[1] ?? model;
  } catch {
    try {
      flags = /^flags\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.split(/\s+/) ?? [];
    } catch {
      // not Linux: the model name is what is known
    }
  }
  const simd = SIMD_FLAGS.filter((f) => flags.includes(f));
  console.log(`load average at start: ${load} (${os.availableParallelism()} cores, ${model})`);
  console.log(`lscpu flags (SIMD): ${simd.length ? simd.join(' ') : 'none of ' + SIMD_FLAGS.join(' ')}`);
}
