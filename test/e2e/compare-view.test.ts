/**
 * The storefront's compare view in a real headless Chromium (as storefront.test.ts): the real service with
 * two tiny generated models (A active, B built with reindex(activate: false), both served), a small demo
 * catalog; the shopper turns "Compare models" on, uploads a photo, and gets one column per model with its
 * ranked matches, shared products marked alike across columns, and the overlap figures of compareModels;
 * then a product chosen from a column, a text query, and back to the plain grid. Screenshots in test-results/.
 */
import fs from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { demoProducts, seedOverHttp, type DemoProduct } from '../../src/demo/seed.js';
import { perturb } from '../../src/demo/synthetic-catalog.js';
import { ADMIN_TOKEN, startTestService, type TestService } from '../support/service.js';
import { JOB, REINDEX, sleep, writeCachedModel, writeModelA } from '../integration/reindex-support.js';
import { findChromium } from '../support/chromium.js';

const SHOTS = path.resolve('test-results');

const executablePath = findChromium();
const suite = executablePath || process.env.CI ? describe : describe.skip;
if (!executablePath && !process.env.CI) console.warn('[e2e] compare view test skipped: no Chromium found (set CHROMIUM_PATH)');

interface Column {
  model: string;
  active: boolean;
  skus: string[];
  marks: Array<string | null>;
  shared: boolean[];
  inAll: boolean[];
}

/** The compare view as the page shows it: per column, the model, its ranked SKUs and their marks. */
async function columns(page: Page): Promise<Column[]> {
  return page.locator('#compare-cols .compare-col').evaluateAll((cols) =>
    cols.map((col: any) => {
      const items: any[] = [...col.querySelectorAll('.compare-item')];
      return {
        model: col.dataset.model,
        active: Boolean(col.querySelector('.active-model')),
        skus: items.map((i) => i.dataset.sku),
        marks: items.map((i) => i.dataset.mark ?? null),
        shared: items.map((i) => i.classList.contains('shared')),
        inAll: items.map((i) => i.classList.contains('in-all')),
      };
    }),
  );
}

/** Waits until the compare view has finished loading under the given heading. */
async function waitForCompare(page: Page, heading: string): Promise<void> {
  await page.waitForFunction((h) => {
    const doc = (globalThis as any).document;
    const view = doc.getElementById('compare');
    return doc.getElementById('results-title')?.textContent === h && !view.hidden && view.getAttribute('aria-busy') === 'false';
  }, heading);
}

suite('storefront compare view in headless Chromium', () => {
  let t: TestService;
  let A: { dir: string; id: string };
  let B: { dir: string; id: string };
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let catalog: DemoProduct[];
  let photo: Buffer;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    fs.mkdirSync(SHOTS, { recursive: true });
    A = await writeModelA();
    B = await writeCachedModel();
    t = await startTestService({ REINDEX_BATCH_SIZE: '16', JOBS_POLL_INTERVAL_MS: '500' }, { model: A.dir });
    catalog = await demoProducts(32);
    await seedOverHttp(catalog, { url: t.url, adminToken: ADMIN_TOKEN, batchSize: 16 });
    // model B built beside A without switching search, by the server itself (so it is loaded there)
    const started = await t.gql(REINDEX, { model: B.id, activate: false }, { admin: true });
    expect(started.errors).toBeUndefined();
    for (let i = 0; ; i++) {
      const j = (await t.gql(JOB, { id: started.data.reindex.id }, { admin: true })).data.reindexJob;
      if (j.state === 'SUCCEEDED') break;
      if (['FAILED', 'CANCELLED'].includes(j.state) || i > 600) throw new Error(`reindex ended ${j.state}`);
      await sleep(100);
    }
    photo = await perturb(catalog[13]!.image, 'crop');

    browser = await chromium.launch({
      executablePath: executablePath!,
      headless: true,
      args: ['--no-sandbox', '--disable-dev-shm-usage', '--no-proxy-server'],
    });
    context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    // the page talks to the loopback service only
    await context.route(
      (url) =>
        !['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname) && !url.protocol.startsWith('data') && !url.protocol.startsWith('blob'),
      (route) => route.abort('blockedbyclient'),
    );
    page = await context.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error') pageErrors.push(m.text());
    });
  }, 240_000);

  afterAll(async () => {
    await browser?.close();
    await t?.stop();
    for (const d of [A?.dir, B?.dir]) if (d) fs.rmSync(d, { recursive: true, force: true });
  });

  it('compares the models on an uploaded photo: a column per model, shared products marked alike, the overlap figures', async () => {
    await page.goto(`${t.url}/`);
    await expect.poll(() => page.locator('#results .card').count()).toBeGreaterThan(0);
    await page.selectOption('#k', '12');
    await page.check('#compare-mode');
    await expect.poll(() => page.locator('#status').textContent()).toContain('to compare models');
    await page.setInputFiles('#photo', { name: 'my-photo.png', mimeType: 'image/png', buffer: photo });
    await waitForCompare(page, 'Models compared: products like your photo');
    expect(await page.locator('#results').isHidden()).toBe(true);

    const cols = await columns(page);
    expect(cols.map((c) => c.model)).toEqual([A.id, B.id]); // every ready model, the active one first
    expect(cols.map((c) => c.active)).toEqual([true, false]);
    for (const c of cols) expect(c.skus).toHaveLength(12);
    const [a, b] = cols as [Column, Column];
    const inB = new Set(b.skus);
    const shared = a.skus.filter((s) => inB.has(s));
    expect(shared.length).toBeGreaterThan(0);
    expect(shared.length).toBeLessThan(12); // two different models: some agreement, not all
    // marked exactly where both returned it, with the same mark in both columns, numbered in A's order
    for (const c of cols) c.skus.forEach((s, i) => expect(c.shared[i]).toBe(shared.includes(s)));
    const markOf = (c: Column, sku: string) => c.marks[c.skus.indexOf(sku)];
    shared.forEach((s, i) => {
      expect(markOf(a, s)).toBe(String(i + 1));
      expect(markOf(b, s)).toBe(String(i + 1));
    });
    expect(a.marks.filter((m) => m === null)).toHaveLength(12 - shared.length);
    // with two models, shared means in every model's list
    expect(a.inAll.filter(Boolean)).toHaveLength(shared.length);

    // the page shows what compareModels answers for the same query, figures included
    const api = await t.gql(
      `query($image: ImageInput, $k: Int) { compareModels(image: $image, k: $k) {
        results { model matches { score product { sku } } } overlap { models jaccard rankCorrelation } sharedByAll } }`,
      { image: { base64: photo.toString('base64') }, k: 12 },
    );
    expect(api.errors).toBeUndefined();
    const c = api.data.compareModels;
    expect(c.results.map((r: { matches: Array<{ product: { sku: string } }> }) => r.matches.map((m) => m.product.sku))).toEqual([
      a.skus,
      b.skus,
    ]);
    const scores = await page.locator('#compare-cols .compare-col').first().locator('.score-value').allTextContents();
    expect(scores).toEqual(c.results[0].matches.map((m: { score: number }) => `score ${m.score.toFixed(3)}`));
    const ov = c.overlap[0];
    expect(ov.jaccard).toBeCloseTo(shared.length / (24 - shared.length));
    const row = page.locator('#overlap .overlap-pair');
    expect(await row.count()).toBe(1);
    expect(await row.locator('th').textContent()).toBe(`${A.id} vs ${B.id}`);
    expect(await row.locator('.jaccard').textContent()).toBe(ov.jaccard.toFixed(2));
    expect(await row.locator('.rank-correlation').textContent()).toBe(ov.rankCorrelation == null ? '—' : ov.rankCorrelation.toFixed(2));
    expect(await page.locator('#status').textContent()).toBe(`2 models · top 12 each · ${shared.length} in every model's top 12`);

    // pointing at a shared product lights it up in both columns
    const sku = shared[0]!;
    await page.locator(`#compare-cols .compare-col >> nth=1 >> .compare-item[data-sku="${sku}"]`).hover();
    expect(await page.locator(`#compare-cols .compare-item.lit`).evaluateAll((els) => els.map((e) => e.getAttribute('data-sku')))).toEqual([
      sku,
      sku,
    ]);
    await page.evaluate(() => (globalThis as any).scrollTo(0, 0));
    await page.screenshot({ path: path.join(SHOTS, 'storefront-compare-photo.png'), fullPage: true });
  });

  it('compares on a product chosen from a column, and on a text; turned off, the grid returns', async () => {
    const [, b] = await columns(page);
    const sku = b!.skus.find((_, i) => !b!.shared[i]) ?? b!.skus[1]!; // one only model B returned
    const product = catalog.find((p) => p.sku === sku)!;
    await page.locator(`#compare-cols .compare-col >> nth=1 >> .compare-item[data-sku="${sku}"] button`).click();
    await waitForCompare(page, `Models compared: similar to ${product.title}`);
    const cols = await columns(page);
    for (const c of cols) {
      expect(c.skus[0]).toBe(sku); // the product itself first, for each model
      expect(c.inAll[0]).toBe(true);
    }

    await page.fill('#q', 'red circle');
    await page.press('#q', 'Enter');
    await waitForCompare(page, 'Models compared: results for “red circle”');
    expect((await columns(page)).map((c) => c.skus.length)).toEqual([12, 12]);

    await page.uncheck('#compare-mode');
    await page.waitForFunction(() => {
      const doc = (globalThis as any).document;
      return doc.getElementById('results-title')?.textContent === 'Results for “red circle”' && doc.getElementById('compare').hidden;
    });
    expect(await page.locator('#results .card').count()).toBe(12);
    expect(pageErrors).toEqual([]);
  });

  it('fits a phone screen: the columns scroll sideways, the page does not', async () => {
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
    await phone.route(
      (url) =>
        !['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname) && !url.protocol.startsWith('data') && !url.protocol.startsWith('blob'),
      (route) => route.abort('blockedbyclient'),
    );
    try {
      const p = await phone.newPage();
      await p.goto(`${t.url}/#compare`);
      await p.setInputFiles('#photo', { name: 'my-photo.png', mimeType: 'image/png', buffer: photo });
      await waitForCompare(p, 'Models compared: products like your photo');
      expect(await p.evaluate(() => (globalThis as any).document.documentElement.scrollWidth <= (globalThis as any).innerWidth)).toBe(true);
      await p.screenshot({ path: path.join(SHOTS, 'storefront-compare-phone.png') });
      const widths = await p.locator('#compare-cols .compare-col').evaluateAll((els) => els.map((e) => e.getBoundingClientRect().width));
      for (const w of widths) expect(w).toBeGreaterThanOrEqual(230); // readable columns, side by side
      const cols = p.locator('#compare-cols');
      expect(await cols.evaluate((e: any) => e.scrollWidth > e.clientWidth)).toBe(true);
    } finally {
      await phone.close();
    }
  });

  it('opens in compare mode from a link, and explains when only one model can answer', async () => {
    const single = await startTestService({}, { model: A.dir });
    try {
      await seedOverHttp(catalog.slice(0, 4), { url: single.url, adminToken: ADMIN_TOKEN });
      const p = await context.newPage();
      await p.goto(`${single.url}/#compare`);
      expect(await p.locator('#compare-mode').isChecked()).toBe(true);
      await p.fill('#q', 'bag');
      await p.press('#q', 'Enter');
      await expect.poll(() => p.locator('#error').textContent()).toContain('Comparing needs at least two models');
      await p.close();
    } finally {
      await single.stop();
    }
  });
});
