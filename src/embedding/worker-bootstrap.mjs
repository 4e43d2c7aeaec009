// Plain-JS entry for the inference worker, so it starts the same way under tsx (npm start), vitest and
// compiled JavaScript: a .ts worker entry gets tsx's ESM loader registered in this thread first.
import { workerData } from 'node:worker_threads';

const entry = workerData.__entry;
if (entry.endsWith('.ts')) {
  const { register } = await import('tsx/esm/api');
  register();
}
await import(entry);
