#!/usr/bin/env node
// The `vps` command (package bin): runs the TypeScript CLI entry through tsx's loader.
import { register } from 'tsx/esm/api';

register();
await import('../src/main.ts');
