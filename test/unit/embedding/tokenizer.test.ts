import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTokenizer, type TextTokenizer } from '../../../src/embedding/tokenizer.js';
import { cleanupDirs, tinyModel } from './helpers.js';

let tok: TextTokenizer;
beforeAll(async () => {
  const dir = await tinyModel();
  const json = JSON.parse(await readFile(join(dir, 'tokenizer.json'), 'utf8'));
  const cfg = JSON.parse(await readFile(join(dir, 'tokenizer_config.json'), 'utf8'));
  tok = createTokenizer(json, cfg, 64);
});
afterAll(cleanupDirs);

describe('text tokenisation (SigLIP 2 rules)', () => {
  it('lowercases, appends EOS, right-pads with the pad id to 64', () => {
    const a = tok.encodeOne('Red Shoes');
    const b = tok.encodeOne('red shoes');
    expect(a).toEqual(b);
    expect(a).toHaveLength(64);
    const eosAt = a.indexOf(tok.eosId);
    expect(eosAt).toBeGreaterThan(0);
    expect(a.slice(eosAt + 1).every((id) => id === tok.padId)).toBe(true);
    expect(a.slice(0, eosAt).includes(tok.padId)).toBe(false);
    expect(a[0]).not.toBe(2); // no BOS: tokenizer_config says add_bos_token=false
  });

  it('truncates long text so that EOS stays last', () => {
    const ids = tok.encodeOne('a very long product description '.repeat(40));
    expect(ids).toHaveLength(64);
    expect(ids[63]).toBe(tok.eosId);
    expect(ids.includes(tok.padId)).toBe(false);
  });

  it('produces int64 [B,64] ids and a matching attention mask', () => {
    const { ids, mask } = tok.encode(['red', '']);
    expect(ids).toBeInstanceOf(BigInt64Array);
    expect(ids.length).toBe(128);
    // "" → just EOS then padding
    expect(ids[64]).toBe(BigInt(tok.eosId));
    expect(ids[65]).toBe(BigInt(tok.padId));
    expect(mask[64]).toBe(1n);
    expect(mask[65]).toBe(0n);
    expect([...mask.subarray(0, 64)].filter((m) => m === 1n).length).toBe(tok.encodeOne('red').indexOf(tok.eosId) + 1);
  });

  it('handles characters outside the vocabulary through byte fallback', () => {
    const ids = tok.encodeOne('café ☕');
    expect(ids).toHaveLength(64);
    expect(ids.includes(3)).toBe(false); // no <unk>
  });
});

describe('SigLIP v1 text conventions (SiglipTokenizer)', () => {
  it('is chosen by tokenizer_class and canonicalises as SiglipTokenizer does', async () => {
    const { normaliseText, textConventionOf } = await import('../../../src/embedding/tokenizer.js');
    expect(textConventionOf({ tokenizer_class: 'SiglipTokenizer' })).toBe('siglip');
    expect(textConventionOf({ tokenizer_class: 'GemmaTokenizer' })).toBe('siglip2');
    expect(textConventionOf({})).toBe('siglip2');
    // lowercase, ASCII punctuation removed, whitespace collapsed and trimmed
    expect(normaliseText('  A Red, "Leather"  Hand-Bag!\t(tan) ', 'siglip')).toBe('a red leather handbag tan');
    expect(normaliseText('Café — «Tan»', 'siglip')).toBe('café — «tan»'); // only ASCII punctuation
    // SigLIP 2 only lowercases
    expect(normaliseText('A Red, Bag!', 'siglip2')).toBe('a red, bag!');
  });

  it('pads with </s> (= EOS) to 64 and gives punctuation variants one encoding', async () => {
    const { hubJson, siglipV1TokenizerJson } = await import('../../../scripts/models/common.js');
    const { json } = siglipV1TokenizerJson();
    const config = await hubJson('siglip-base-patch16-384', 'tokenizer_config.json'); // as published
    const v1 = createTokenizer(json, config, 64);
    expect(v1.convention).toBe('siglip');
    expect(v1.padId).toBe(v1.eosId);
    const a = v1.encodeOne('Red shoes!');
    expect(a).toEqual(v1.encodeOne('red   shoes'));
    expect(a).toHaveLength(64);
    expect(a.slice(a.indexOf(v1.eosId)).every((id) => id === v1.eosId)).toBe(true);
    const { mask } = v1.encode(['red shoes']);
    expect([...mask].filter((m) => m === 1n).length).toBe(a.indexOf(v1.eosId) + 1);
  });
});
