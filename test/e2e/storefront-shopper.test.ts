/**
 * The storefront's ways to ask (issue 24) in a real headless Chromium (Debian's `chromium`, driven by
 * playwright-core), against the real service with the tiny stand-in model: a shopper's photo refined with
 * words (a composed query: the photo and the words), the catalog categories the photo likely shows
 * (classifyImage) narrowing the filter in one click, and "more like this / not like this" on result cards
 * (recommendProducts). The page is checked with axe-core (test/support/axe.ts: WCAG 2.x A/AA and best practices) in those states.
 *
 * Chromium: CHROMIUM_PATH, else `chromium` / `chromium-browser` / `google-chrome` on PATH. Without one the
 * suite fails when CI is set, and is skipped otherwise.
 */
import fs from 'node:fs';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { demoProducts, seedOverHttp, type DemoProduct } from '../../src/demo/seed.js';
import { perturb } from '../../src/demo/synthetic-catalog.js';
import { ADMIN_TOKEN, startTestService, tinyModelDir, type TestService } from '../support/service.js';
import { axeViolations, describeViolations } from '../support/axe.js';
import { CHROMIUM_INSTALL_HINT, findChromium } from '../support/chromium.js';

const executablePath = findChromium();
const suite = executablePath || process.env.CI ? describe : describe.skip;
if (!executablePath && !process.env.CI) console.warn(`[e2e] storefront shopper test skipped: no Chromium found; ${CHROMIUM_INSTALL_HINT}`);

/** One GraphQL operation the page sent: its name and variables (JSON body, or a multipart request's operations). */
interface Sent {
  name: string;
  variables: Record<string, any>;
  map?: Record<string, string[]>;
}

suite('storefront: refine, likely categories, more/not like this (headless Chromium)', () => {
  let t: TestService;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let catalog: DemoProduct[];
  let target: DemoProduct;
  let photo: Buffer;
  const sent: Sent[] = [];

  beforeAll(async () => {
    if (!executablePath) throw new Error(`No Chromium for the browser test: ${CHROMIUM_INSTALL_HINT}.`);
    t = await startTestService({}, { model: await tinyModelDir() });
    catalog = await demoProducts(48);
    await seedOverHttp(catalog, { url: t.url, adminToken: ADMIN_TOKEN, batchSize: 24 });
    target = catalog.find((p, i) => i >= 10 && catalog.filter((q) => q.category === p.category).length >= 5)!;
    photo = await perturb(target.image, 'crop');
    browser = await chromium.launch({
      executablePath,
      headless: true,
      args: ['--no-sandbox', '--disable-dev-shm-usage', '--no-proxy-server'],
    });
    context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    await context.route(
      (url) =>
        !['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname) && !url.protocol.startsWith('data') && !url.protocol.startsWith('blob'),
      (route) => route.abort('blockedbyclient'),
    );
    page = await context.newPage();
    page.on('request', (r) => {
      if (!r.url().endsWith('/graphql') || r.method() !== 'POST') return;
      const body = r.postData() ?? '';
      // multipart: the "operations" and "map" fields; JSON: the body itself
      const ops = /\{"query":.*"variables":.*\}/.exec(body)?.[0] ?? body;
      try {
        const parsed = JSON.parse(ops.split(/\r?\n/)[0]!) as { query: string; variables: Record<string, any> };
        const mapText = /\{"0":\[[^\]]*\]\}/.exec(body)?.[0];
        sent.push({
          name: /query (\w+)/.exec(parsed.query)?.[1] ?? '',
          variables: parsed.variables,
          ...(mapText ? { map: JSON.parse(mapText) as Record<string, string[]> } : {}),
        });
      } catch {
        // not an operation this test looks at
      }
    });
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await t?.stop();
  });

  const last = (name: string) => sent.filter((s) => s.name === name).at(-1);

  it('refines a photo search with words: the photo and the words as one composed query', async () => {
    await page.goto(`${t.url}/`);
    await waitForResults(page, 'Catalog');
    await expect.poll(() => page.locator('#category option').count()).toBeGreaterThan(2); // categories known
    expect(await page.locator('#refine-form').isHidden()).toBe(true); // only after a photo search
    await page.setInputFiles('#photo', { name: 'my-photo.png', mimeType: 'image/png', buffer: photo });
    await waitForResults(page, 'Products like your photo');
    expect(await page.locator('#refine-form').isVisible()).toBe(true);

    await page.fill('#refine', 'in red, not leather');
    await page.press('#refine', 'Enter');
    await waitForResults(page, 'Products like your photo, refined: “in red, not leather”');
    const refined = last('Refined')!;
    expect(refined.variables.query.terms).toEqual([
      { image: { file: null }, weight: 1 },
      { text: 'in red', weight: 0.6 },
      { text: 'leather', weight: -0.4 },
    ]);
    expect(refined.map).toEqual({ '0': ['variables.query.terms.0.image.file'] }); // the photo itself, uploaded
    expect(await page.locator('#results .card').count()).toBe(24);
    expect(await page.locator('#error').isHidden()).toBe(true);

    // Emptied: the photo alone again.
    await page.fill('#refine', '');
    await page.press('#refine', 'Enter');
    await waitForResults(page, 'Products like your photo');
  });

  it('shows the categories the photo likely shows, and one click narrows the filter to one', async () => {
    const buttons = page.locator('#likely-list button');
    await expect.poll(() => buttons.count()).toBe(3);
    const sentLabels = last('Likely')!.variables.labels as string[];
    const categories = (await page.locator('#category option').evaluateAll((os) => os.map((o: any) => o.value as string))).filter(Boolean);
    expect([...sentLabels].sort()).toEqual([...categories].sort()); // the catalog's categories are the labels
    const chosen = (await buttons.first().getAttribute('data-category'))!;
    await buttons.first().click();
    await page.waitForFunction((category) => {
      const doc = (globalThis as any).document;
      const cards: any[] = [...doc.querySelectorAll('#results .card')];
      return (
        doc.getElementById('results').getAttribute('aria-busy') === 'false' &&
        cards.length > 0 &&
        cards.every((c) => c.dataset.category === category)
      );
    }, chosen);
    expect(await page.locator('#category').inputValue()).toBe(chosen);
    expect(await buttons.first().getAttribute('aria-pressed')).toBe('true');
    expect(last('ByImage')!.variables.filter).toEqual({ category: chosen });
    // A second click widens it again.
    await buttons.first().click();
    await expect.poll(() => page.locator('#category').inputValue()).toBe('');
    await waitForResults(page, 'Products like your photo');
  });

  it('has no WCAG 2 A/AA violations (axe-core) with the refine box, likely categories and card controls shown', async () => {
    expect(describeViolations(await axeViolations(page))).toBe('');
    fs.mkdirSync('test-results', { recursive: true });
    await page.screenshot({ path: 'test-results/storefront-photo-refine-likely.png' });
  });

  it('"more like this" and "not like this" run recommendProducts with the products marked', async () => {
    const cards = page.locator('#results .card');
    const liked = (await cards.nth(1).getAttribute('data-sku'))!;
    const likedProduct = catalog.find((p) => p.sku === liked)!;
    await cards.nth(1).locator('button.more-like').click();
    await waitForResults(page, `More like ${likedProduct.title}`);
    const ids = await page.locator('#results .card').evaluateAll((els) => els.map((e) => e.getAttribute('data-sku')));
    expect(ids).not.toContain(liked); // the examples are left out
    expect(ids).toHaveLength(24);
    const first = last('Recommend')!;
    expect(first.variables.positive).toHaveLength(1);
    expect(first.variables.negative).toEqual([]);

    const disliked = (await page.locator('#results .card').nth(0).getAttribute('data-sku'))!;
    await page.locator('#results .card').nth(0).locator('button.not-like').click();
    await waitForResults(page, `More like ${likedProduct.title}, not like ${catalog.find((p) => p.sku === disliked)!.title}`);
    const second = last('Recommend')!;
    expect(second.variables.positive).toEqual(first.variables.positive);
    expect(second.variables.negative).toHaveLength(1);
    const after = await page.locator('#results .card').evaluateAll((els) => els.map((e) => e.getAttribute('data-sku')));
    expect(after).not.toContain(disliked);
    expect(after).not.toContain(liked);
    expect(describeViolations(await axeViolations(page))).toBe('');
    await page.screenshot({ path: 'test-results/storefront-more-like-these.png' });
  });
});

/** Waits until the grid has finished loading under the given heading. */
async function waitForResults(page: Page, heading: string): Promise<void> {
  await page.waitForFunction((h) => {
    const doc = (globalThis as any).document;
    return doc.getElementById('results-title')?.textContent === h && doc.getElementById('results').getAttribute('aria-busy') === 'false';
  }, heading);
}
