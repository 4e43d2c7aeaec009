/**
 * Accessibility checks for the browser tests with axe-core, the rule engine Deque keeps (a pinned dev
 * dependency), rather than checks written by hand: its source is evaluated in the page (through the
 * DevTools protocol, so the storefront's Content-Security-Policy, which allows no inline script, stays as
 * served) and `axe.run` checks the document as it is at that moment.
 */
import axe from 'axe-core';
import type { Page } from 'playwright-core';

/** The WCAG 2.0–2.2 A and AA rules and axe's best practices: what "axe clean" means here. */
export const AXE_TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice'];

export interface AxeViolation {
  /** The rule, e.g. `color-contrast`. */
  id: string;
  impact: string | null;
  help: string;
  /** Each offending element: its CSS selector and what axe says is wrong with it. */
  nodes: Array<{ target: string; summary: string }>;
}

/**
 * Runs axe on the page (injected once per document) and returns its violations; none means axe found nothing.
 * It checks the page as it settles: finite CSS transitions and animations (the result grid fades back from
 * its loading opacity over 0.15 s) are awaited first, because axe computes contrast from the colours
 * rendered at that instant, and a card caught mid-fade failed `color-contrast` in CI on a loaded machine.
 */
export async function axeViolations(page: Page, tags: readonly string[] = AXE_TAGS): Promise<AxeViolation[]> {
  await page.evaluate(async () => {
    const running: any[] = (globalThis as any).document.getAnimations(); // runs in the page (no DOM lib here)
    // an infinite one (the loading spinner) never finishes; a cancelled one rejects, hence allSettled
    await Promise.allSettled(running.filter((a) => a.effect?.getTiming().iterations !== Infinity).map((a) => a.finished));
  });
  if (!(await page.evaluate(() => 'axe' in globalThis))) await page.evaluate(axe.source);
  return page.evaluate(async (values) => {
    const engine = (globalThis as any).axe; // runs in the page (the project's TS lib has no DOM)
    const result = await engine.run((globalThis as any).document, {
      runOnly: { type: 'tag', values },
      resultTypes: ['violations'],
    });
    return result.violations.map((v: any) => ({
      id: v.id,
      impact: v.impact ?? null,
      help: v.help,
      nodes: v.nodes.map((n: any) => ({ target: n.target.join(' '), summary: n.failureSummary ?? '' })),
    }));
  }, tags as string[]);
}

/** One line per violation and element, for an assertion's message. */
export const describeViolations = (violations: readonly AxeViolation[]): string =>
  violations.flatMap((v) => v.nodes.map((n) => `${v.id} (${v.impact}): ${v.help} at ${n.target}: ${n.summary}`)).join('\n');
