/**
 * `model` subcommands, for src/main.ts to delegate to (`npm run model -- <subcommand> …`):
 *
 *   fetch [repo] [--variant auto|fp32|fp16|quantized…] [--revision main] [--cache-dir DIR]
 *        download into the Hugging Face hub cache (DIR, default HF_HUB_CACHE / HF_HOME/hub /
 *        ~/.cache/huggingface/hub) and print the snapshot directory
 *   path  [repo] [--revision main] [--cache-dir DIR]   print where the model lives (its snapshot, its
 *        former .cache/models entry, else the hub cache folder a fetch would fill)
 *
 * Generated test models are written by `npm run model:generate` (scripts/models/generate.ts), not here.
 *
 * Default repo: onnx-community/siglip2-base-patch16-224-ONNX. HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE are honoured.
 * Returns the process exit code.
 */
import { parseArgs } from 'node:util';
import { hubSettings, modelFetchSettings } from '../config.js';
import { expectedProvider } from '../embedding/providers.js';
import { isAppError } from '../errors.js';
import { fetchModel, type FetchProgress } from '../hub/fetch.js';
import { DEFAULT_MODEL_REPO, findCachedModel, hubRepoDir } from '../hub/paths.js';
import { ProgressBar } from './progress.js';

/** A fetch's progress as the command line's progress bar, in MiB, on stderr. */
export function fetchProgressBar(): (p: FetchProgress) => void {
  const bar = new ProgressBar('model fetch', { unit: 'MiB', scale: 1048576 });
  return (p) => {
    const finished = p.done >= p.total;
    bar.update(p.done, p.total, p.file.slice(-40), finished);
    if (finished) bar.done();
  };
}

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
  const cacheDir = values['cache-dir'] ?? hubSettings().cacheDir;
  try {
    switch (cmd) {
      case 'fetch': {
        const fetchDefaults = modelFetchSettings(); // EMBEDDING_VARIANT / EMBEDDING_PROVIDER
        const dir = await fetchModel({
          repo: arg ?? DEFAULT_MODEL_REPO,
          variant: values.variant ?? fetchDefaults.variant,
          provider: expectedProvider(fetchDefaults.provider),
          revision: values.revision,
          cacheDir,
          onProgress: fetchProgressBar(),
        });
        out(dir);
        return 0;
      }
      case 'path': {
        const repo = arg ?? DEFAULT_MODEL_REPO;
        out(findCachedModel(repo, { revision: values.revision, hubCache: cacheDir }) ?? hubRepoDir(repo, cacheDir));
        return 0;
      }
      case 'generate':
        // The generators are development tooling (scripts/models, dev dependencies): not in the runtime graph.
        out('model generate moved to a development script: npm run model:generate -- tiny|b16 [dir]');
        return 2;
      default:
        out('usage: model fetch [repo] [--variant V] [--revision R] [--cache-dir D] | model path [repo] [--revision R] [--cache-dir D]');
        return 2;
    }
  } catch (err) {
    out(isAppError(err) ? `${err.code}: ${err.message}` : `error: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}
