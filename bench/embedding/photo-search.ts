/**
 * A shopper's photo through the whole service (issue 23): 12 MP (4032×3024, a phone's default) and
 * 640×480 JPEGs uploaded to `similarProducts` over HTTP as the storefront uploads them (multipart, one
 * file, not downsized), answered by the int8 SigLIP 2 B/16-224 tower (random weights: the real
 * architecture's cost, bench/embedding/common.ts) and a search of the catalog.
 *
 *   npx tsx bench/embedding/photo-search.ts [--requests 16] [--products 200]
 *
 * Per photo size:
 * - latency p50/p99 alone (one request at a time) and with 4 shoppers at once (a closed loop each);
 * - photos/s with 4 shoppers at once, in 3 rounds alternated with the limit: the raw int8 tower (tensors
 *   in, vectors out, batches of 4 through a worker pool with the service's default options, in this
 *   process, idle while the server works); the goal is ≥ 85 % of its rate end to end for 12 MP photos;
 * - the server's CPU ms per photo, alone (/proc/<pid>/stat: every thread of the process), split into
 *   decode and resize (the service's own functions, images/decode.ts and embedding/preprocess.ts, timed
 *   in this process on the same photos), inference (the raw tower's CPU ms per image) and the rest
 *   (HTTP, multipart, GraphQL, the search statement, the answer).
 *
 * The server is `node --import tsx src/main.ts serve` on its embedded database (the README's default),
 * with the rate limit off: this measures the photo path's cost, not admission.
 */
import { spawn } from 'node:child_process';
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { COLOURS, renderProductImage, SHAPES, type Colour } from '../../src/demo/synthetic-catalog.js';
import { createEmbedder, defaultEmbedderOptions, type Embedder } from '../../src/embedding/index.js';
import type { WorkerPool } from '../../src/embedding/pool.js';
import { arg, median, percentile, printMachine, table } from '../lib/report.js';
import { freePort } from '../lib/net.js';
import { cpuMs, ensureB16, MODEL_SIDE, photoJpegs, preprocessOnce } from './common.js';

const requests = Number(arg('requests', '16'));
const products = Number(arg('products', '200'));
const SHOPPERS = 4;
const S = MODEL_SIDE;
const ADMIN_TOKEN = 'bench-photo-search-admin-token';
const sizes: Array<[string, number, number]> = [
  ['12 MP 4032×3024', 4032, 3024],
  ['640×480', 640, 480],
];

printMachine();
const dir = await ensureB16();
const photos = new Map<string, Buffer[]>();
for (const [name, w, h] of sizes) photos.set(name, await photoJpegs(4, w, h, 21));
for (const [name] of sizes) {
  const mb = photos.get(name)!.reduce((a, b) => a + b.length, 0) / 4 / 1024 / 1024;
  console.error(`[bench] ${name}: ${mb.toFixed(2)} MiB per JPEG`);
}

// ---- the raw tower: the limit ---------------------------------------------------------------------------
/** The raw tower's rate at a batch size: `images` images in batches, wall and CPU per image. */
async function rawBurst(pool: WorkerPool, batch: number, images: number): Promise<{ rate: number; cpuPerImage: number }> {
  const data = new Float32Array(batch * 3 * S * S).map(() => Math.random() * 2 - 1);
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (let done = 0; done < images; done += batch) await pool.run('image', batch, data.slice());
  const n = Math.ceil(images / batch) * batch;
  return { rate: (n * 1000) / (performance.now() - t0), cpuPerImage: cpuMs(process.cpuUsage(c0)) / n };
}

// ---- decode and resize, in this process, with the service's functions -------------------------------
/** Median CPU ms of decode (shrunk on load, as the service decodes) and of resize, after one untimed pass. */
async function preprocessCost(jpegs: Buffer[]): Promise<{ decode: number; resize: number }> {
  const samples = [];
  for (let r = 0; r < 3; r++) for (const jpeg of jpegs) samples.push(await preprocessOnce(jpeg, true));
  const timed = samples.slice(jpegs.length);
  return { decode: median(timed.map((x) => x.decodeCpu)), resize: median(timed.map((x) => x.resizeCpu)) };
}

// ---- the server -----------------------------------------------------------------------------------------
const PORT = await freePort();
const BASE = `http://127.0.0.1:${PORT}`;
const dataDir = mkdtempSync(path.join(os.tmpdir(), 'vps-bench-photo-search-'));

/** The server process's CPU time so far, ms (utime + stime of every thread). */
function serverCpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // fields 14 and 15, in USER_HZ (100 on Linux)
}

const SEARCH = `query($file: Upload!) { similarProducts(image: { file: $file }, k: 10) { score product { id title price } } }`;
async function search(jpeg: Buffer): Promise<{ ms: number; ok: boolean }> {
  const form = new FormData();
  form.set('operations', JSON.stringify({ query: SEARCH, variables: { file: null } }));
  form.set('map', JSON.stringify({ 0: ['variables.file'] }));
  form.set('0', new Blob([new Uint8Array(jpeg)], { type: 'image/jpeg' }), 'photo.jpg');
  const t0 = performance.now();
  const res = await fetch(`${BASE}/graphql`, { method: 'POST', body: form, headers: { 'apollo-require-preflight': 'true' } });
  const body = (await res.json()) as { data?: { similarProducts?: unknown[] }; errors?: unknown[] };
  const ms = performance.now() - t0;
  return { ms, ok: res.ok && !body.errors && (body.data?.similarProducts?.length ?? 0) > 0 };
}

const server = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', 'serve'], {
  env: {
    ...process.env,
    EMBEDDING_MODEL_DIR: dir,
    DATA_DIR: dataDir,
    PORT: String(PORT),
    HOST: '127.0.0.1',
    ADMIN_TOKEN,
    PGLITE_PSQL_PORT: '0',
    MODEL_AUTO_FETCH: 'false',
    RATE_LIMIT_ENABLED: 'false',
    LOG_LEVEL: 'warn',
    NODE_ENV: 'production',
  },
  stdio: ['ignore', 'ignore', 'inherit'],
});
const ROUNDS = 3;
const latency = new Map<string, { alone: number[]; together: number[]; cpuPerPhoto: number; decode: number; resize: number }>();
const rates = new Map<string, number[]>(); // per round: photos/s with 4 shoppers, or the raw tower's img/s
const rawCpu: number[] = [];
let errors = 0;
/** 4 shoppers at once, each in a closed loop of `each` searches: photos/s, and each search's latency. */
async function shoppers(jpegs: Buffer[], each: number, into: number[]): Promise<number> {
  const t0 = performance.now();
  let n = 0;
  await Promise.all(
    Array.from({ length: SHOPPERS }, async (_, k) => {
      for (let i = 0; i < each; i++) {
        const r = await search(jpegs[(k + i) % jpegs.length]!);
        if (!r.ok) errors++;
        into.push(r.ms);
        n++;
      }
    }),
  );
  return (n * 1000) / (performance.now() - t0);
}
let embedder: Embedder | null = null;
try {
  for (let i = 0; ; i++) {
    if (server.exitCode !== null) throw new Error(`the server exited (${server.exitCode})`);
    if (
      await fetch(`${BASE}/readyz`).then(
        (r) => r.ok,
        () => false,
      )
    )
      break;
    if (i > 1200) throw new Error('the server did not become ready');
    await new Promise((r) => setTimeout(r, 250));
  }
  // The catalog: small product photos, embedded by the service itself on upsert.
  const looks = SHAPES.flatMap((shape) => (Object.keys(COLOURS) as Colour[]).map((colour) => ({ shape, colour })));
  for (let start = 0; start < products; start += 25) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(25, products - start) }, async (_, j) => {
        const n = start + j;
        const look = looks[n % looks.length]!;
        const image = await renderProductImage(look.shape, look.colour, { size: 96, format: 'jpeg' });
        return {
          sku: `PS-${n}`,
          title: `${look.colour} ${look.shape} ${n}`,
          category: 'bags',
          price: n % 100,
          image: { base64: image.toString('base64') },
        };
      }),
    );
    const res = await fetch(`${BASE}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${ADMIN_TOKEN}` },
      body: JSON.stringify({ query: 'mutation($p: [ProductInput!]!) { upsertProducts(products: $p) { id } }', variables: { p: batch } }),
    });
    const body = (await res.json()) as { errors?: unknown[] };
    if (body.errors) throw new Error(`seeding failed: ${JSON.stringify(body.errors).slice(0, 300)}`);
  }
  console.error(`[bench] ${products} products seeded`);
  // The raw tower in this process, with the service's default options; idle while the server works.
  embedder = await createEmbedder({ ...defaultEmbedderOptions(), modelDir: dir });
  const pool = (embedder as unknown as { pool: WorkerPool }).pool;
  await rawBurst(pool, SHOPPERS, SHOPPERS); // warm-up

  for (const [name] of sizes) {
    const jpegs = photos.get(name)!;
    for (const jpeg of jpegs) await search(jpeg); // warm-up: plans, the JIT, the first decode of this size
    // Alone: one request at a time, and the server's CPU for them.
    const alone: number[] = [];
    const cpu0 = serverCpuMs(server.pid!);
    for (let i = 0; i < requests; i++) {
      const r = await search(jpegs[i % jpegs.length]!);
      if (!r.ok) errors++;
      alone.push(r.ms);
    }
    const cpuPerPhoto = (serverCpuMs(server.pid!) - cpu0) / requests;
    latency.set(name, { alone, together: [], cpuPerPhoto, ...(await preprocessCost(jpegs)) });
  }
  // Rates: the raw tower and each photo size, alternated round by round (the order rotates), so that
  // each ratio compares bursts minutes apart at most.
  const sides = ['raw', ...sizes.map(([name]) => name)];
  for (let round = 0; round < ROUNDS; round++)
    for (let i = 0; i < sides.length; i++) {
      const side = sides[(i + round) % sides.length]!;
      let rate: number;
      if (side === 'raw') {
        const r = await rawBurst(pool, SHOPPERS, 2 * requests);
        rawCpu.push(r.cpuPerImage);
        rate = r.rate;
      } else rate = await shoppers(photos.get(side)!, requests / 2, latency.get(side)!.together);
      rates.set(side, [...(rates.get(side) ?? []), rate]);
      console.error(`[bench] round ${round + 1}: ${side} ${rate.toFixed(2)}/s`);
    }
} finally {
  await embedder?.close();
  server.kill('SIGTERM');
  await new Promise((r) => server.once('exit', r));
  rmSync(dataDir, { recursive: true, force: true });
}

const raw = rates.get('raw')!;
const inference = median(rawCpu);
table(
  `A shopper's photo through the service: similarProducts over HTTP (multipart), int8 B/16 tower, ${products} products; ${requests} searches alone, ${ROUNDS} × ${2 * requests} with ${SHOPPERS} shoppers per size, alternated with the raw tower${errors ? `; ${errors} errors` : '; 0 errors'}`,
  sizes.map(([name]) => {
    const l = latency.get(name)!;
    const r = rates.get(name)!;
    return {
      photo: name,
      'alone p50 ms': median(l.alone),
      'alone p99 ms': percentile(l.alone, 99),
      '4 shoppers p50 ms': median(l.together),
      '4 shoppers p99 ms': percentile(l.together, 99),
      'photos/s, 4 shoppers (rounds)': r.map((x) => x.toFixed(2)).join(' / '),
      'of the raw tower’s rate, per round': r.map((x, i) => `${((100 * x) / raw[i]!).toFixed(0)} %`).join(' / '),
    };
  }),
);
table(`The raw int8 tower (tensors in, vectors out, batches of ${SHOPPERS}, the service's default worker options), in the same rounds`, [
  { 'img/s (rounds)': raw.map((x) => x.toFixed(2)).join(' / '), 'CPU ms/img': inference },
]);
table(
  'Server CPU per photo alone, split (decode, resize: the service’s functions in this process; inference: the raw tower’s CPU per image)',
  sizes.map(([name]) => {
    const l = latency.get(name)!;
    return {
      photo: name,
      'server CPU ms/photo': l.cpuPerPhoto,
      'decode ms': l.decode,
      'resize + normalise ms': l.resize,
      'inference ms': inference,
      'the rest (HTTP, GraphQL, search) ms': l.cpuPerPhoto - l.decode - l.resize - inference,
    };
  }),
);
