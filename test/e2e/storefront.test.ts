/**
 * The storefront page in a real headless Chromium (Debian's `chromium`, driven by playwright-core):
 * the real service with the tiny stand-in model over this file's test database, a generated catalog,
 * then a shopper's photo upload, a category filter, a click through to similar products (by keyboard),
 * text search, an error message and a phone-width layout, the search area drawn on the photo (by pointer
 * and by keyboard), and axe-core's WCAG A/AA rules on the results with the area open, on a desktop and a
 * phone screen (test/support/axe.ts). Screenshots go to test-results/.
 *
 * Chromium: CHROMIUM_PATH, else `chromium` / `chromium-browser` / `google-chrome` on PATH. Without one the
 * suite fails when CI is set, and is skipped otherwise.
 */
import fs from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { demoProducts, seedOverHttp, type DemoProduct } from '../../src/demo/seed.js';
import { perturb, renderProductImage } from '../../src/demo/synthetic-catalog.js';
import { ADMIN_TOKEN, startTestService, tinyModelDir, type TestService } from '../support/service.js';
import { axeViolations, describeViolations } from '../support/axe.js';
import { CHROMIUM_INSTALL_HINT, findChromium } from '../support/chromium.js';

const SHOTS = path.resolve('test-results');
const MAX_IMAGE_PIXELS = 150_000;

const executablePath = findChromium();
const suite = executablePath || process.env.CI ? describe : describe.skip;
if (!executablePath && !process.env.CI) console.warn(`[e2e] storefront test skipped: no Chromium found; ${CHROMIUM_INSTALL_HINT}`);

suite('storefront page in headless Chromium', () => {
  let t: TestService;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let catalog: DemoProduct[];
  let target: DemoProduct;
  let photo: Buffer;

  beforeAll(async () => {
    if (!executablePath) throw new Error(`No Chromium for the browser test: ${CHROMIUM_INSTALL_HINT}.`);
    fs.mkdirSync(SHOTS, { recursive: true });
    // A small pixel cap (the generated photos are 320×320) so that "too large" is quick to provoke.
    t = await startTestService({ IMAGE_MAX_PIXELS: String(MAX_IMAGE_PIXELS) }, { model: await tinyModelDir() });
    catalog = await demoProducts(48);
    await seedOverHttp(catalog, { url: t.url, adminToken: ADMIN_TOKEN, batchSize: 24 });
    // A product whose category has several others, so the filter visibly narrows the grid.
    target = catalog.find((p, i) => i >= 10 && catalog.filter((q) => q.category === p.category).length >= 5)!;
    photo = await perturb(target.image, 'crop'); // the shopper's own, slightly different photo

    browser = await chromium.launch({
      executablePath,
      headless: true,
      // root in CI containers needs --no-sandbox; no proxy: the page only talks to the loopback service
      args: ['--no-sandbox', '--disable-dev-shm-usage', '--no-proxy-server'],
    });
    context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    await blockNonLoopback(context);
    page = await context.newPage();
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await t?.stop();
  });

  it('loads the catalog and names the model in use', async () => {
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error') pageErrors.push(m.text());
    });
    await page.goto(`${t.url}/`);
    await expect.poll(() => page.locator('#results .card').count()).toBeGreaterThan(0);
    await expect.poll(() => page.locator('#model').textContent()).toContain('tiny');
    expect(await page.locator('#model-notice').isVisible()).toBe(true);
    expect(await page.locator('#results-title').textContent()).toBe('Catalog');
    expect(await page.locator('#status').textContent()).toBe(`24 of ${catalog.length} products`);
    await page.click('#more'); // the next page of the catalog
    await expect.poll(() => page.locator('#results .card').count()).toBe(catalog.length);
    expect(await page.locator('#more').isHidden()).toBe(true);
    // categories come from the catalog
    const options = await page.locator('#category option').allTextContents();
    expect(options).toContain(target.category);
    expect(pageErrors).toEqual([]);
  });

  it('finds the product from an uploaded photo, filtered to its category', async () => {
    await page.setInputFiles('#photo', { name: 'my-photo.png', mimeType: 'image/png', buffer: photo });
    await waitForResults(page, 'Products like your photo');
    expect(await page.locator('#photo-preview').isVisible()).toBe(true);

    await page.selectOption('#category', target.category);
    await page.waitForFunction((category) => {
      const doc = (globalThis as any).document; // runs in the page (the project's TS lib has no DOM)
      const cards: any[] = [...doc.querySelectorAll('#results .card')];
      return (
        doc.getElementById('results').getAttribute('aria-busy') === 'false' &&
        cards.length > 0 &&
        cards.every((c) => c.dataset.category === category)
      );
    }, target.category);
    const cards = page.locator('#results .card');
    const skus = await cards.evaluateAll((els) => els.map((e) => e.getAttribute('data-sku')));
    const categories = await cards.evaluateAll((els) => els.map((e) => e.getAttribute('data-category')));
    expect(skus[0]).toBe(target.sku);
    expect(new Set(categories)).toEqual(new Set([target.category]));
    expect(skus).toHaveLength(catalog.filter((p) => p.category === target.category).length); // k (24) exceeds the category
    // each card shows image, title, price, category and score
    const first = cards.first();
    expect(await first.locator('.card-title').textContent()).toBe(target.title);
    expect(await first.locator('.price').textContent()).toMatch(/\d/);
    expect(await first.locator('.category').textContent()).toBe(target.category);
    expect(await first.locator('.score-value').textContent()).toMatch(/^score (0|1)\.\d{3}$/);
    await expect.poll(() => first.locator('img').evaluate((img: any) => img.complete && img.naturalWidth > 0)).toBe(true);
    // A search result shows the photo that matched (issue 22: a product has several), by its own id.
    const matched = await first.getAttribute('data-matched-image');
    expect(matched).toMatch(/^\d+$/);
    expect(await first.locator('img').getAttribute('src')).toBe(`/images/${matched}/thumbnail.webp`);
    await page.evaluate(() => (globalThis as any).scrollTo(0, 0)); // the sticky search panel follows the scroll
    await page.screenshot({ path: path.join(SHOTS, 'storefront-desktop-photo.png'), fullPage: true });
  });

  it('shows similar products for a product chosen with the keyboard', async () => {
    const second = page.locator('#results .card').nth(1);
    const sku = await second.getAttribute('data-sku').then((v) => v!);
    const product = catalog.find((p) => p.sku === sku)!;
    await second.locator('button.card-hit').focus();
    await page.keyboard.press('Enter');
    await waitForResults(page, `Similar to ${product.title}`);
    const cards = page.locator('#results .card');
    const skus = await cards.evaluateAll((els) => els.map((e) => e.getAttribute('data-sku')));
    const categories = await cards.evaluateAll((els) => els.map((e) => e.getAttribute('data-category')));
    expect(skus.length).toBeGreaterThan(0);
    expect(skus).not.toContain(sku); // the product itself is not its own recommendation
    expect(new Set(categories)).toEqual(new Set([target.category])); // the filter still applies
    await page.evaluate(() => (globalThis as any).scrollTo(0, 0)); // the sticky search panel follows the scroll
    await page.screenshot({ path: path.join(SHOTS, 'storefront-desktop-similar.png'), fullPage: true });

    await page.click('#clear-query');
    await waitForResults(page, 'Catalog');
  });

  it('searches by text', async () => {
    await page.selectOption('#category', '');
    await page.fill('#q', 'red circle');
    await page.press('#q', 'Enter');
    await waitForResults(page, 'Results for “red circle”');
    expect(await page.locator('#results .card').count()).toBe(24); // k
  });

  it('explains errors from the API: not an image, too large, nothing found, bad filter', async () => {
    await page.setInputFiles('#photo', { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('not a photo at all') });
    await page.locator('#error').waitFor({ state: 'visible' });
    expect(await page.locator('#error').textContent()).toContain('not an image we can read');
    expect(await page.locator('#results .card').count()).toBe(0);

    const huge = await renderProductImage(target.shape, target.colour, { size: 640 }); // 409,600 pixels
    await page.setInputFiles('#photo', { name: 'huge.png', mimeType: 'image/png', buffer: huge });
    await expect
      .poll(() => page.locator('#error').textContent())
      .toContain('That photo has too many pixels (the limit is 0.15 megapixels)');

    await page.setInputFiles('#photo', { name: 'my-photo.png', mimeType: 'image/png', buffer: photo });
    await waitForResults(page, 'Products like your photo');
    expect(await page.locator('#error').isHidden()).toBe(true);
    await page.fill('#min-price', '100000');
    await page.locator('#error').waitFor({ state: 'visible' });
    expect(await page.locator('#error').textContent()).toContain('Nothing found with these filters');

    await page.fill('#min-price', '50');
    await page.fill('#max-price', '10');
    await expect.poll(() => page.locator('#error').textContent()).toContain('minPrice must not exceed');
    await page.click('#reset-filters');
    await waitForResults(page, 'Products like your photo');
  });

  it('says so when the service has no model, and still shows the catalog', async () => {
    const bare = await startTestService(); // same code, no embedding model
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    await blockNonLoopback(ctx);
    try {
      const p = await ctx.newPage();
      await p.goto(`${bare.url}/`);
      await expect.poll(() => p.locator('#model').textContent()).toBe('Model: none loaded');
      await p.setInputFiles('#photo', { name: 'my-photo.png', mimeType: 'image/png', buffer: photo });
      await expect.poll(() => p.locator('#error').textContent()).toContain('Search by photo or text is unavailable');
    } finally {
      await ctx.close();
      await bare.stop();
    }
  });

  it('searches an area of the photo: drawn with the pointer, moved with the keyboard, cleared (issue 22)', async () => {
    const p = await context.newPage();
    const regions: unknown[] = [];
    // What the page asks for: the region variable of each photo query (the multipart request's operations).
    p.on('request', (r) => {
      const body = r.postData() ?? '';
      if (r.url().endsWith('/graphql') && body.includes('ByImage')) {
        const ops = /\{"query":.*"variables":\{.*?\}\}/s.exec(body)?.[0];
        regions.push(ops ? ((JSON.parse(ops) as { variables: { region?: unknown } }).variables.region ?? null) : null);
      }
    });
    await p.goto(`${t.url}/`);
    await waitForResults(p, 'Catalog');
    await p.setInputFiles('#photo', { name: 'my-photo.png', mimeType: 'image/png', buffer: photo });
    await waitForResults(p, 'Products like your photo');
    expect(await p.locator('#region-editor').isVisible()).toBe(true);
    expect(regions).toEqual([null]);

    // Drawn with the pointer: searched on release, with the box as fractions of the photo.
    const box = (await p.locator('#region-canvas').boundingBox())!;
    await p.mouse.move(box.x + box.width * 0.1, box.y + box.height * 0.1);
    await p.mouse.down();
    await p.mouse.move(box.x + box.width * 0.6, box.y + box.height * 0.7, { steps: 4 });
    await p.mouse.up();
    await expect.poll(() => regions.length).toBe(2);
    const drawn = regions[1] as { x: number; y: number; width: number; height: number };
    expect(drawn.x).toBeCloseTo(0.1, 1);
    expect(drawn.width).toBeCloseTo(0.5, 1);
    expect(drawn.height).toBeCloseTo(0.6, 1);
    await waitForResults(p, 'Products like your photo');

    // Moved with the keyboard (the area has the focus after drawing): one search once the key is let go.
    expect(await p.evaluate(() => (globalThis as any).document.activeElement?.id)).toBe('region-box');
    await p.keyboard.press('ArrowRight');
    await expect.poll(() => regions.length).toBe(3);
    expect((regions[2] as { x: number }).x).toBeCloseTo(drawn.x + 0.05, 2);
    await p.keyboard.press('Shift+ArrowDown');
    await expect.poll(() => regions.length).toBe(4);
    expect((regions[3] as { height: number }).height).toBeCloseTo(drawn.height + 0.05, 2);
    // Cleared: the whole photo again.
    await p.keyboard.press('Delete');
    await expect.poll(() => regions.length).toBe(5);
    expect(regions[4]).toBeNull();
    expect(await p.locator('#region-box').isHidden()).toBe(true);
    // Keyboard only: a centred area from the button.
    await p.locator('#region-draw').focus();
    await p.keyboard.press('Enter');
    await expect.poll(() => regions.length).toBe(6);
    expect(regions[5]).toEqual({ x: 0.25, y: 0.25, width: 0.5, height: 0.5 });
    await waitForResults(p, 'Products like your photo');
    // The area is in the tab order: away with Shift+Tab and back with Tab, and still moved by the keys.
    const focused = () => p.evaluate(() => (globalThis as any).document.activeElement?.id as string | undefined);
    if ((await focused()) !== 'region-box') await p.locator('#region-box').focus();
    await p.keyboard.press('Shift+Tab');
    expect(await focused()).not.toBe('region-box');
    await p.keyboard.press('Tab');
    expect(await focused()).toBe('region-box');
    await p.keyboard.press('ArrowDown');
    await expect.poll(() => regions.length).toBe(7);
    expect((regions[6] as { y: number }).y).toBeCloseTo(0.3, 2);
    await waitForResults(p, 'Products like your photo');
    expect(await p.locator('#results .card').count()).toBeGreaterThan(0);
    // Accessible as it stands: results for the area, the area open on the photo (axe's WCAG A/AA rules).
    expect(await p.locator('#region-box').isVisible()).toBe(true);
    expect(describeViolations(await axeViolations(p))).toBe('');
    await p.close();
  });

  it('fits a phone screen', async () => {
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
    await blockNonLoopback(phone);
    const p = await phone.newPage();
    await p.goto(`${t.url}/`);
    await waitForResults(p, 'Catalog');
    expect(await p.locator('#filters').evaluate((d: any) => d.open)).toBe(false); // folded away on a phone
    await p.setInputFiles('#photo', { name: 'my-photo.png', mimeType: 'image/png', buffer: photo });
    await waitForResults(p, 'Products like your photo');
    expect(await p.locator('#results .card').first().getAttribute('data-sku')).toBe(target.sku);
    // no horizontal scrolling, two cards per row
    expect(await p.evaluate(() => (globalThis as any).document.documentElement.scrollWidth <= (globalThis as any).innerWidth)).toBe(true);
    const tops = await p
      .locator('#results .card')
      .evaluateAll((els) => els.slice(0, 3).map((e) => Math.round(e.getBoundingClientRect().top)));
    expect(tops[0]).toBe(tops[1]);
    expect(tops[2]).toBeGreaterThan(tops[0]!);
    // The photo to draw an area on fits the screen too.
    const canvas = (await p.locator('#region-canvas').boundingBox())!;
    expect(canvas.x + canvas.width).toBeLessThanOrEqual(390);
    await p.screenshot({ path: path.join(SHOTS, 'storefront-phone-photo.png') });
    // The area, opened by a tap, searched, and accessible on the small screen too (axe's WCAG A/AA rules).
    await p.locator('#region-draw').tap();
    await waitForResults(p, 'Products like your photo');
    expect(await p.locator('#region-box').isVisible()).toBe(true);
    const box = (await p.locator('#region-box').boundingBox())!;
    expect(box.x + box.width).toBeLessThanOrEqual(390);
    expect(describeViolations(await axeViolations(p))).toBe('');
    await phone.close();
  });
});

/** The page talks to the loopback service only; anything else is refused (no stray traffic from tests). */
async function blockNonLoopback(context: BrowserContext): Promise<void> {
  await context.route(
    (url) =>
      !['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname) && !url.protocol.startsWith('data') && !url.protocol.startsWith('blob'),
    (route) => route.abort('blockedbyclient'),
  );
}

/** Waits until the grid has finished loading under the given heading. */
async function waitForResults(page: Page, heading: string): Promise<void> {
  await page.waitForFunction((h) => {
    const doc = (globalThis as any).document;
    return doc.getElementById('results-title')?.textContent === h && doc.getElementById('results').getAttribute('aria-busy') === 'false';
  }, heading);
}
