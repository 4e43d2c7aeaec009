#!/usr/bin/env node
// The `vps` command (package bin). In a checkout it runs the TypeScript CLI entry through tsx's loader
// (a dev dependency); where only the build is shipped (the Docker image: dist/, no src/) it runs that.
import { existsSync } from 'node:fs';
import { URL } from 'node:url';

if (existsSync(new URL('../src/main.ts', import.meta.url))) {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/main.ts');
} else {
  await import('../dist/src/main.js');
}
