/**
 * Zero-shot classification with SigLIP: each label becomes a text ("a photo of {}" by default), and its
 * probability for an image is the sigmoid loss's own, sigmoid(exp(logit_scale)·cos + logit_bias)
 * (Embedder.matchProbability, calibration.ts says where the scale and bias come from). The sigmoid loss
 * scores every image–text pair on its own, so the labels' probabilities are independent: they need not
 * sum to 1 (multi-label by nature), unlike CLIP's softmax over the labels.
 *
 * The one implementation shared by the classifyImage query and the catalog's tagging job: the query
 * classifies one image, the job one vector per photo against label vectors computed once per job.
 */
import { AppError, ErrorCode } from '../errors.js';
import type { Embedder } from './index.js';
import { MAX_TEXT_CHARS } from './index.js';

/** A query's or a taxonomy's label count bound: each label is one text embedding on a cold cache. */
export const MAX_LABELS = 64;
export const DEFAULT_TEMPLATE = 'a photo of {}';
const PLACEHOLDER = '{}';

export interface LabelScore {
  label: string;
  /** Cosine similarity of the image and the label's prompt. */
  score: number;
  /** The calibrated probability; null where the model's calibration is unknown. */
  probability: number | null;
}

export interface LabelSet {
  labels: string[];
  prompts: string[];
  vectors: Float32Array[];
}

/**
 * The labels and template checked, deduplicated (case-insensitively, keeping the first spelling: SigLIP 2's
 * texts are lowercased), and turned into prompts. Throws BAD_USER_INPUT before anything is embedded.
 */
export function labelPrompts(labels: readonly string[], template: string = DEFAULT_TEMPLATE): { labels: string[]; prompts: string[] } {
  const bad = (message: string, details?: Record<string, unknown>) => new AppError(ErrorCode.BAD_USER_INPUT, message, details);
  if (!template.includes(PLACEHOLDER)) throw bad(`template must contain ${PLACEHOLDER}, where each label goes`);
  const seen = new Set<string>();
  const kept: string[] = [];
  labels.forEach((raw, index) => {
    const label = raw.trim();
    if (!label) throw bad(`label ${index} is empty`, { index });
    const key = label.toLowerCase();
    if (seen.has(key)) return;
    seen.add(key);
    kept.push(label);
  });
  if (kept.length === 0) throw bad('labels must name at least one label');
  if (kept.length > MAX_LABELS) throw bad(`at most ${MAX_LABELS} labels (got ${kept.length})`, { max: MAX_LABELS });
  const prompts = kept.map((label) => template.split(PLACEHOLDER).join(label));
  prompts.forEach((p, index) => {
    if (p.length > MAX_TEXT_CHARS) throw bad(`label ${index}'s prompt is longer than ${MAX_TEXT_CHARS} characters`, { index });
  });
  return { labels: kept, prompts };
}

/** The label set's text vectors, embedded once (a tagging job reuses them for every product). */
export async function embedLabels(embedder: Embedder, labels: readonly string[], template?: string): Promise<LabelSet> {
  const checked = labelPrompts(labels, template);
  const vectors = await embedder.embedTexts(checked.prompts);
  return { ...checked, vectors };
}

function dot(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new AppError(ErrorCode.BAD_USER_INPUT, `vector dimensions differ (${a.length} vs ${b.length})`);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

/**
 * Each label's score and probability for one L2-normalised image vector, most probable first (ties, and
 * an uncalibrated model's nulls, ordered by cosine).
 */
export function classifyVector(imageVector: Float32Array, set: LabelSet, probability: (score: number) => number | null): LabelScore[] {
  return set.labels
    .map((label, i) => {
      const score = dot(imageVector, set.vectors[i]!);
      return { label, score, probability: probability(score) };
    })
    .sort((a, b) => b.score - a.score);
}
