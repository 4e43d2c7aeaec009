/**
 * Generate a model directory in the hub's ONNX-export layout.
 *
 *   npx tsx scripts/models/generate.ts tiny  [dir=models/tiny]                [--dimension 64] [--image-size 32]
 *   npx tsx scripts/models/generate.ts b16   [dir=models/siglip2-b16-random]  [--layers 12] [--image-size 224]
 *                                                                           [--text-tower tiny|base]
 *   npx tsx scripts/models/generate.ts v1-384 [dir=models/siglip-b16-384-random] [--layers 12]
 *   npx tsx scripts/models/generate.ts naflex [dir=models/siglip2-b16-naflex-random] [--layers 12] [--max-patches 256]
 *
 * b16 and v1-384 write fp32, int8 (`*_quantized.onnx`) and fp16 (`*_fp16.onnx`) graphs of both towers (v1-384: SigLIP v1 base
 * at 384 px with SiglipTokenizer's files); naflex writes SigLIP 2 NaFlex in its export layout (patch inputs,
 * *.onnx_data weights, image_embeds/text_embeds, logit_scale.json); `--text-tower base` makes the text
 * tower the real SigLIP 2 base's size (256k vocabulary, 1.1 GB fp32) instead of the small stand-in.
 *
 * Generated directories are never committed (models/ is gitignored).
 */
import { parseArgs } from 'node:util';
import { writeTinyModel } from './tiny-model.js';
import { V1_384_MODEL_ID, writeSiglipVisionModel } from './siglip-vision.js';
import { writeNaflexModel } from './siglip2-naflex.js';

async function main() {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
      dimension: { type: 'string' },
      'image-size': { type: 'string' },
      layers: { type: 'string' },
      'text-tower': { type: 'string' },
      'max-patches': { type: 'string' },
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
  } else if (kind === 'v1-384') {
    const dir = dirArg ?? 'models/siglip-b16-384-random';
    await writeSiglipVisionModel(dir, { family: 'siglip', imageSize: 384, layers: num(values.layers), modelId: V1_384_MODEL_ID });
    console.log(`SigLIP v1 B/16-384 (random weights) written to ${dir} in ${(performance.now() - t0).toFixed(0)} ms`);
  } else if (kind === 'naflex') {
    const dir = dirArg ?? 'models/siglip2-b16-naflex-random';
    await writeNaflexModel(dir, { layers: num(values.layers), maxNumPatches: num(values['max-patches']) });
    console.log(`SigLIP 2 B/16 NaFlex (random weights) written to ${dir} in ${(performance.now() - t0).toFixed(0)} ms`);
  } else {
    console.error(
      'usage: generate.ts tiny|b16|v1-384|naflex [dir] [--dimension N] [--image-size S] [--layers L] [--text-tower tiny|base] [--max-patches N]',
    );
    process.exit(2);
  }
}

await main();
