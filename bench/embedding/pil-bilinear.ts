/**
 * An independent reference for SigLIP's image resize: PIL's antialiased BILINEAR (Image.resize with
 * resample=2), re-implemented from Pillow's ImagingResample: separable triangle filter whose support is
 * scaled by the downscale factor, horizontal pass then vertical pass, 8-bit rounding between passes.
 * Used by tests and the preprocessing benchmark to measure how far sharp's `kernel: 'linear'` lands.
 */
function coeffs(inSize: number, outSize: number) {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = 1.0 * filterScale;
  const bounds: [number, number][] = [];
  const weights: Float64Array[] = [];
  for (let x = 0; x < outSize; x++) {
    const center = (x + 0.5) * scale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize);
    const w = new Float64Array(xmax - xmin);
    let total = 0;
    for (let i = 0; i < w.length; i++) {
      const t = Math.abs((i + xmin - center + 0.5) / filterScale);
      w[i] = t < 1 ? 1 - t : 0;
      total += w[i]!;
    }
    if (total > 0) for (let i = 0; i < w.length; i++) w[i]! /= total;
    bounds.push([xmin, xmax]);
    weights.push(w);
  }
  return { bounds, weights };
}

const clip8 = (v: number) => (v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v));

/** Resize interleaved RGB (w×h×3) to outW×outH (no crop), like PIL's Image.resize(…, BILINEAR). */
export function pilBilinearResize(rgb: Uint8Array, w: number, h: number, outW: number, outH: number): Uint8Array {
  const hc = coeffs(w, outW);
  const tmp = new Uint8Array(outW * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < outW; x++) {
      const [xmin] = hc.bounds[x]!;
      const wt = hc.weights[x]!;
      for (let c = 0; c < 3; c++) {
        let s = 0;
        for (let i = 0; i < wt.length; i++) s += wt[i]! * rgb[(y * w + xmin + i) * 3 + c]!;
        tmp[(y * outW + x) * 3 + c] = clip8(s);
      }
    }
  }
  const vc = coeffs(h, outH);
  const out = new Uint8Array(outW * outH * 3);
  for (let y = 0; y < outH; y++) {
    const [ymin] = vc.bounds[y]!;
    const wt = vc.weights[y]!;
    for (let x = 0; x < outW; x++) {
      for (let c = 0; c < 3; c++) {
        let s = 0;
        for (let i = 0; i < wt.length; i++) s += wt[i]! * tmp[((ymin + i) * outW + x) * 3 + c]!;
        out[(y * outW + x) * 3 + c] = clip8(s);
      }
    }
  }
  return out;
}

export function meanAbsDiff(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) throw new Error('length mismatch');
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i]! - b[i]!);
  return s / a.length;
}
