/**
 * How tests start `vps` (src/main.ts) as a process of its own. By default from the sources, as `npm start`
 * runs them (`node --import tsx src/main.ts`). With TEST_VPS_ENTRY=dist, the compiled `dist/src/main.js`,
 * as `npm run start:prod` ships it: CI builds dist/ just before the tests and sets this, so the tests that
 * start processes exercise the production build, and each process starts without the TypeScript loader
 * (measured here: `vps --help` 0.9–1.1 s of CPU compiled against 2.0–2.4 s through tsx; the crash, process
 * and first-start tests start dozens). A stale dist/ would test old code: set it only right after a build.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const DIST_MAIN = path.join(REPO, 'dist', 'src', 'main.js');

/** The node arguments that run `vps <args>` (for spawn(process.execPath, …)); absolute paths, any cwd. */
export function vpsArgs(...args: string[]): string[] {
  if (process.env.TEST_VPS_ENTRY === 'dist') {
    if (!existsSync(DIST_MAIN)) throw new Error('TEST_VPS_ENTRY=dist, but dist/src/main.js is missing: run `npm run build` first');
    return ['--enable-source-maps', DIST_MAIN, ...args];
  }
  // tsx's loader by its resolved URL: `--import tsx` would resolve from the process's cwd, which may be
  // outside the repository (the eval CLI test runs in a temporary directory)
  return ['--import', import.meta.resolve('tsx'), path.join(REPO, 'src', 'main.ts'), ...args];
}
