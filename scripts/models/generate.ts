/**
 * Generate a model directory in the hub's ONNX-export layout.
 *
 *   npx tsx scripts/models/generate.ts tiny  [dir=models/tiny]                [--dimension 64] [--image-size 32]
 *   npx tsx scripts/models/generate.ts b16   [dir=models/siglip2-b16-random]  [--layers 12] [--image-size 224]
 *                                                                           [--text-tower tiny|base]
 *
 * b16 writes fp32 and int8 (`*_quantized.onnx`) graphs of both towers; `--text-tower base` makes the text
 * tower the real SigLIP 2 base's size (256k vocabulary, 1.1 GB fp32) instead of the small stand-in.
 *
 * Generated directories are never committed (models/ is gitignored).
 */
import { parseArgs } from 'node:util';
import { writeTinyModel } from './tiny-model.js';
import { writeSiglipVisionModel } from './siglip-vision.js';

async function main() {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
      dimension: { type: 'string' },
      'image-size': { type: 'string' },
      layers: { type: 'string' },
      'text-tower': { type: 'string' },
    },
  });
  const [kind, dirArg] = positionals;
  const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
  const t0 = performance.now();
  if (kind === 'tiny') {
    const dir = dirArg ?? 'models/tiny';
    await writeTinyModel(dir, { dimension: num(values.dimension), imageSize: num(values['image-size']) });
    console.log(`tiny model written to ${dir} in ${(performance.now() - t0).toFixed(0)} ms`);
  } else if (kind === 'b16') {
    const dir = dirArg ?? 'models/siglip2-b16-random';
    await writeSiglipVisionModel(dir, {
      layers: num(values.layers),
      imageSize: num(values['image-size']),
      textTower: values['text-tower'] === 'base' ? 'base' : 'tiny',
    });
    console.log(`SigLIP 2 B/16 vision tower (random weights) written to ${dir} in ${(performance.now() - t0).toFixed(0)} ms`);
  } else {
    console.error('usage: generate.ts tiny|b16 [dir] [--dimension N] [--image-size S] [--layers L] [--text-tower tiny|base]');
    process.exit(2);
  }
}

await main();
