import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import AxeBuilder from '@axe-core/playwright';
import { test as base, expect, type Page, type TestInfo } from '@playwright/test';
import { suiteAddresses, type SuiteAddresses } from './suite';

const SCREENS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'e2e-artifacts', 'screens');
const WCAG_21_AA = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'];

export interface Fixtures {
  suite: SuiteAddresses;
  /** Every message in which the browser refused something by the gateway's
   * Content-Security-Policy; a test fails at its end if there is one. */
  policyViolations: string[];
  /** Checks the screen as it is now with axe (WCAG 2.1 AA, no violation allowed) and saves
   * a full-page screenshot of it as e2e-artifacts/screens/<project>/<name>.png. */
  review: (name: string) => Promise<void>;
}

export const test = base.extend<Fixtures>({
  // Playwright reads a fixture's dependencies from its first parameter's pattern: none here.
  // eslint-disable-next-line no-empty-pattern
  suite: async ({}, provide) => {
    await provide(suiteAddresses());
  },
  baseURL: async ({ suite }, provide) => {
    await provide(suite.gateway);
  },
  policyViolations: [
    async ({ page }, provide) => {
      const refused: string[] = [];
      page.on('console', (message) => {
        if (/Content Security Policy/i.test(message.text())) refused.push(message.text());
      });
      await provide(refused);
      expect(refused, 'what the Content-Security-Policy refused').toEqual([]);
    },
    { auto: true },
  ],
  review: async ({ page }, provide, testInfo) => {
    await provide((name) => checkScreen(page, testInfo, name));
  },
});

export { expect };

async function checkScreen(page: Page, testInfo: TestInfo, name: string): Promise<void> {
  // Nothing still loading: the screen as a person reads it.
  await expect(page.getByRole('progressbar')).toHaveCount(0);
  await expect(page.getByText(/^loading/i)).toHaveCount(0);
  const folder = path.join(SCREENS, testInfo.project.name);
  mkdirSync(folder, { recursive: true });
  const file = path.join(folder, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  await testInfo.attach(name, { path: file, contentType: 'image/png' });
  const results = await new AxeBuilder({ page }).withTags(WCAG_21_AA).analyze();
  const found = results.violations.map((violation) => ({
    rule: violation.id,
    impact: violation.impact,
    help: violation.help,
    nodes: violation.nodes.map((node) => node.target.join(' ')),
  }));
  expect(found, `axe on ${name} (${testInfo.project.name})`).toEqual([]);
}
