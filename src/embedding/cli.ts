/**
 * `model` subcommands, for src/main.ts to delegate to (`npm run model -- <subcommand> …`):
 *
 *   fetch [repo] [--variant auto|fp32|fp16|quantized…] [--revision main] [--cache-dir DIR]   download into the model cache
 *   path  [repo] [--cache-dir DIR]                                      print where the model lives
 *   generate tiny|b16 [DIR] [--dimension N] [--image-size S] [--layers L]  write a generated model
 *
 * Default repo: onnx-community/siglip2-base-patch16-224-ONNX. HF_ENDPOINT and HF_TOKEN are honoured.
 * Returns the process exit code.
 */
import { parseArgs } from 'node:util';
import { isAppError } from '../errors.js';
import { DEFAULT_MODEL_REPO, modelCachePath, defaultModelCacheDir } from './hub-paths.js';
import { fetchModel } from './hub.js';

export async function runModelCommand(argv: string[], out: (line: string) => void = (l) => console.log(l)): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      variant: { type: 'string' },
      revision: { type: 'string' },
      'cache-dir': { type: 'string' },
      dimension: { type: 'string' },
      'image-size': { type: 'string' },
      layers: { type: 'string' },
      'text-tower': { type: 'string' },
    },
  });
  const [cmd, arg] = positionals;
  const cacheDir = values['cache-dir'] ?? defaultModelCacheDir();
  const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
  try {
    switch (cmd) {
      case 'fetch': {
        const dir = await fetchModel({
          repo: arg ?? DEFAULT_MODEL_REPO,
          variant: values.variant ?? process.env.EMBEDDING_VARIANT ?? 'auto',
          revision: values.revision,
          cacheDir,
        });
        out(dir);
        return 0;
      }
      case 'path':
        out(modelCachePath(arg ?? DEFAULT_MODEL_REPO, cacheDir));
        return 0;
      case 'generate': {
        const kind = arg;
        const dir = positionals[2];
        if (kind === 'tiny') {
          const { writeTinyModel } = await import('../../scripts/models/tiny-model.js');
          out(await writeTinyModel(dir ?? 'models/tiny', { dimension: num(values.dimension), imageSize: num(values['image-size']) }));
          return 0;
        }
        if (kind === 'b16') {
          const { writeSiglipVisionModel } = await import('../../scripts/models/siglip-vision.js');
          out(
            await writeSiglipVisionModel(dir ?? 'models/siglip2-b16-random', {
              layers: num(values.layers),
              imageSize: num(values['image-size']),
              textTower: values['text-tower'] === 'base' ? 'base' : 'tiny',
            }),
          );
          return 0;
        }
        out('usage: model generate tiny|b16 [dir]');
        return 2;
      }
      default:
        out('usage: model fetch [repo] [--variant V] [--revision R] [--cache-dir D] | model path [repo] | model generate tiny|b16 [dir]');
        return 2;
    }
  } catch (err) {
    out(isAppError(err) ? `${err.code}: ${err.message}` : `error: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}
