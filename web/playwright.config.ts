import { defineConfig } from '@playwright/test';

// The end-to-end tests drive Debian's Chromium (`make chromium`); Playwright downloads no
// browser of its own (PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1). e2e/global-setup.ts starts the
// whole suite on free ports, the gateway serving dist/, so `npm run build` comes first
// (`make web-e2e` does both).
const ARTIFACTS = 'e2e-artifacts';

export default defineConfig({
  testDir: './e2e',
  testMatch: '**/*.spec.ts',
  globalSetup: './e2e/global-setup.ts',
  outputDir: `${ARTIFACTS}/results`,
  // The suite is a dozen Python processes on the same machine: two browsers at once keep it
  // busy without starving it.
  workers: 2,
  fullyParallel: true,
  forbidOnly: !!process.env.CI,
  retries: 0,
  timeout: 90_000,
  expect: { timeout: 20_000 },
  reporter: [['list'], ['html', { outputFolder: `${ARTIFACTS}/report`, open: 'never' }]],
  use: {
    launchOptions: { executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium' },
    trace: 'retain-on-failure',
    screenshot: 'only-on-failure',
    // A date shown as a date must not move with the time zone: the browser is set far from
    // UTC, where a due date parsed as midnight UTC would show the day before.
    timezoneId: 'America/Los_Angeles',
    locale: 'en-US',
  },
  projects: [
    { name: 'desktop', use: { viewport: { width: 1280, height: 800 } } },
    {
      name: 'phone',
      use: { viewport: { width: 360, height: 740 }, isMobile: true, hasTouch: true },
    },
  ],
});
