/**
 * Embedding-like vectors for search tests and benchmarks: clustered, of low intrinsic dimension,
 * L2-normalised, like image embeddings of a catalog (many near-duplicates within a product family).
 */
export function seededRandom(seed: number) {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const normal = () => Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next());
  return { next, normal };
}

export interface VectorSpace {
  dimension: number;
  /** The i-th catalog vector (deterministic). */
  vector(i: number): Float32Array;
  /** A query near a random catalog region (not identical to any stored vector). */
  query(j: number): Float32Array;
}

export function embeddingLikeSpace(opts: { dimension: number; clusters?: number; latent?: number; seed?: number }): VectorSpace {
  const { dimension } = opts;
  const latent = opts.latent ?? 16;
  const clusters = opts.clusters ?? 64;
  const rnd = seededRandom(opts.seed ?? 1);
  const projection = Array.from({ length: latent }, () => Float32Array.from({ length: dimension }, () => rnd.normal()));
  const centres = Array.from({ length: clusters }, () => Float32Array.from({ length: latent }, () => rnd.normal()));
  const make = (seed: number, spread: number) => {
    const r = seededRandom(seed);
    const c = centres[Math.floor(r.next() * clusters)]!;
    const z = c.map((x) => x + spread * r.normal());
    const v = new Float32Array(dimension);
    for (let l = 0; l < latent; l++) {
      const zl = z[l]!;
      const row = projection[l]!;
      for (let d = 0; d < dimension; d++) v[d]! += zl * row[d]!;
    }
    for (let d = 0; d < dimension; d++) v[d]! += 0.05 * r.normal() * Math.sqrt(latent); // small full-rank noise
    let n = 0;
    for (const x of v) n += x * x;
    n = Math.sqrt(n);
    return v.map((x) => x / n);
  };
  return {
    dimension,
    vector: (i) => make(1_000_003 * (i + 1), 0.6),
    query: (j) => make(7_000_001 * (j + 1) + 13, 0.6),
  };
}
