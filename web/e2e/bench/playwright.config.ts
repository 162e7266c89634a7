import { defineConfig } from '@playwright/test';

// The web benchmark's browser half (scripts/bench_web.py starts the suite, seeds it and runs
// this): one desktop browser, one worker, nothing else running beside it.
export default defineConfig({
  testDir: '.',
  testMatch: '*.bench.ts',
  globalSetup: '../global-setup.ts',
  outputDir: '../../e2e-artifacts/bench-results',
  workers: 1,
  retries: 0,
  timeout: 10 * 60_000,
  expect: { timeout: 30_000 },
  reporter: 'list',
  use: {
    launchOptions: { executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium' },
    viewport: { width: 1280, height: 800 },
  },
});
