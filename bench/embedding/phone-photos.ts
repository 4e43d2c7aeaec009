/**
 * CPU cost of a phone photo's preprocessing (issue 23): decode + resize + normalise of 12, 24 and 50 MP
 * JPEGs (and a 640×480 one, the size the other embedding benches use) to a 224×224 SigLIP 2 tensor, by
 * the old path (full-size decode, Pillow-exact squash from full size) and the new one (decoded shrunk
 * on load to DECODE_OVERSAMPLE × 224, images/embed.ts, then the same squash), alternated image by image
 * so that both see the same machine load. CPU ms is process CPU time (user + system, every thread: libvips
 * decodes on its own threads) around one image at a time; wall ms beside it.
 *
 *   npx tsx bench/embedding/phone-photos.ts [--reps 5]
 *
 * No model is needed: the preprocessing spec is SigLIP 2's (224, BILINEAR, mean/std 0.5).
 */
import { execFileSync } from 'node:child_process';
import { arg } from '../lib/report.js';
import { loadLine, median, MODEL_SIDE, photoJpegs, preprocessOnce, SHRUNK_DECODE, table, type PreprocessSample } from './common.js';

const reps = Number(arg('reps', '5'));
const S = MODEL_SIDE;
const atLeast = SHRUNK_DECODE;

/** The CPU flags that matter to decoding and inference, and the model name (lscpu; absent off Linux). */
function cpuLine(): string {
  try {
    const out = execFileSync('lscpu', { encoding: 'utf8' });
    const model = /Model name:\s*(.+)/.exec(out)?.[1]?.trim() ?? '?';
    const flags = (/Flags:\s*(.+)/.exec(out)?.[1] ?? '').split(/\s+/);
    const wanted = flags.filter((f) => /^(sse4_2|avx|avx2|fma|avx512f|avx512bw|avx512_vnni|avx_vnni|amx_tile|amx_int8|amx_bf16)$/.test(f));
    return `${model}; flags: ${wanted.join(' ')}`;
  } catch {
    return 'lscpu unavailable';
  }
}

const once = preprocessOnce; // the old path decodes at full size, the new one shrunk on load

const sizes: Array<[string, number, number]> = [
  ['640×480', 640, 480],
  ['12 MP 4032×3024', 4032, 3024],
  ['24 MP 5712×4284', 5712, 4284],
  ['50 MP 8160×6120', 8160, 6120],
];

console.log(loadLine());
console.log(cpuLine());
const rows: Record<string, string | number>[] = [];
for (const [name, w, h] of sizes) {
  const jpegs = await photoJpegs(2, w, h, 5);
  const samples: Record<'old' | 'new', PreprocessSample[]> = { old: [], new: [] };
  await once(jpegs[0]!, false); // warm-up: sharp's first call, the JIT of the resize
  await once(jpegs[0]!, true);
  for (let r = 0; r < reps; r++) {
    for (const j of jpegs) {
      // alternated, and which goes first alternates too
      const order: Array<'old' | 'new'> = r % 2 ? ['new', 'old'] : ['old', 'new'];
      for (const path of order) samples[path].push(await once(j, path === 'new'));
    }
  }
  for (const path of ['old', 'new'] as const) {
    const s = samples[path];
    const dec = median(s.map((x) => x.decodeCpu));
    const rs = median(s.map((x) => x.resizeCpu));
    rows.push({
      photo: name,
      path: path === 'old' ? 'full decode' : `shrunk to ${atLeast.width}`,
      decoded: s[0]!.decoded,
      'decode CPU ms': dec.toFixed(1),
      'resize+normalise CPU ms': rs.toFixed(1),
      'total CPU ms (median)': median(s.map((x) => x.decodeCpu + x.resizeCpu)).toFixed(1),
      'wall ms (median)': median(s.map((x) => x.wall)).toFixed(1),
      n: s.length,
    });
  }
}
table(`Phone photo preprocessing to ${S}×${S} (decode + resize + normalise), old vs new path alternated`, rows);
console.log(loadLine());
