/**
 * `model` subcommands, for src/main.ts to delegate to (`npm run model -- <subcommand> …`):
 *
 *   fetch [repo] [--variant auto|fp32|fp16|quantized…] [--revision main] [--cache-dir DIR]   download into the model cache
 *   path  [repo] [--cache-dir DIR]                                      print where the model lives
 *
 * Generated test models are written by `npm run model:generate` (scripts/models/generate.ts), not here.
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
    },
  });
  const [cmd, arg] = positionals;
  const cacheDir = values['cache-dir'] ?? defaultModelCacheDir();
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
      case 'generate':
        // The generators are development tooling (scripts/models, dev dependencies): not in the runtime graph.
        out('model generate moved to a development script: npm run model:generate -- tiny|b16 [dir]');
        return 2;
      default:
        out('usage: model fetch [repo] [--variant V] [--revision R] [--cache-dir D] | model path [repo]');
        return 2;
    }
  } catch (err) {
    out(isAppError(err) ? `${err.code}: ${err.message}` : `error: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}
