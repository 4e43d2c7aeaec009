/** Finding the Chromium the browser tests drive (Playwright's own browsers are not installed here). */
import fs from 'node:fs';
import path from 'node:path';

export const CHROMIUM_INSTALL_HINT =
  "install Debian's chromium (`apt-get install -y chromium`) or set CHROMIUM_PATH to a Chromium/Chrome executable";

/** CHROMIUM_PATH when set (null if it does not exist), else the first Chromium or Chrome on PATH. */
export function findChromium(): string | null {
  const explicit = process.env.CHROMIUM_PATH;
  if (explicit) return fs.existsSync(explicit) ? explicit : null;
  for (const dir of (process.env.PATH ?? '').split(path.delimiter).filter(Boolean)) {
    for (const name of ['chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable']) {
      const candidate = path.join(dir, name);
      try {
        fs.accessSync(candidate, fs.constants.X_OK);
        return candidate;
      } catch {
        // not here
      }
    }
  }
  return null;
}
