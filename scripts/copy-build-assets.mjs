// After `tsc -p tsconfig.build.json`: copies what the compiled service reads next to its own files
// (resolved from import.meta.url): the worker bootstrap, the GraphQL SDL and the storefront page.
import { cpSync, readdirSync } from 'node:fs';

const copy = (from, to) => cpSync(from, to, { recursive: true });
copy('src/embedding/worker-bootstrap.mjs', 'dist/src/embedding/worker-bootstrap.mjs');
for (const f of readdirSync('src/schema').filter((n) => n.endsWith('.graphql'))) copy(`src/schema/${f}`, `dist/src/schema/${f}`);
copy('web', 'dist/web');
