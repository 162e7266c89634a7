import { writeFileSync } from 'node:fs';
import { signIn } from '../app';
import { expect, test } from '../fixtures';

// The listing's states the benchmark walks through, each reached from the one before by a
// single change of the Status or the Sort by control (a snake through the grid), so that
// every measured query is one the browser has not loaded before.
const STATUSES = ['', 'pending', 'past_due', 'paid', 'void'];
const SORTS = ['due_date:desc', 'due_date:asc', 'client_name:asc', 'client_name:desc', 'status:asc', 'status:desc'];

interface Sample {
  query: string;
  /** From the control's change event to the frame after the new rows were in the page. */
  shown_ms: number;
  /** The listing's fetch as the browser's resource timing saw it. */
  fetch_ms: number;
  /** From the change event to the fetch's start (the app's work before the request). */
  before_fetch_ms: number;
  /** From the response's end to the frame with the rows (parsing, rendering, painting). */
  after_fetch_ms: number;
}

test('a filter change to the rows shown', async ({ page }) => {
  const email = process.env.BENCH_EMAIL;
  const out = process.env.BENCH_OUT;
  if (!email || !out) throw new Error('BENCH_EMAIL and BENCH_OUT are set by scripts/bench_web.py');
  await signIn(page, email);
  const rows = page.getByRole('table').locator('tbody tr');
  await expect(rows).toHaveCount(25);

  const samples: Sample[] = [];
  let status = '';
  for (const [index, sort] of SORTS.entries()) {
    const order = index % 2 === 0 ? STATUSES : [...STATUSES].reverse();
    if (index > 0) samples.push(await measure(page, 'Sort by', sort, status, sort));
    for (const next of order) {
      if (next === status) continue;
      status = next;
      samples.push(await measure(page, 'Status', next, status, sort));
    }
  }
  writeFileSync(out, JSON.stringify(samples, null, 2));
});

async function measure(
  page: import('@playwright/test').Page,
  control: string,
  value: string,
  status: string,
  sort: string,
): Promise<Sample> {
  const [orderBy, orderDir] = sort.split(':') as [string, string];
  const query = new URLSearchParams({
    ...(status ? { status } : {}),
    order_by: orderBy,
    order_dir: orderDir,
    limit: '25',
  }).toString();
  await page.evaluate(() => performance.clearResourceTimings());
  // In the page: the time of the change event, then the first moment the table is no longer
  // busy after having been busy (TanStack Query's fetch of the new page), then a frame.
  const shown = page.evaluate(
    () =>
      new Promise<{ start: number; end: number }>((resolve) => {
        let start = 0;
        let fetching = false;
        document.addEventListener('change', () => (start = performance.now()), { capture: true, once: true });
        const observer = new MutationObserver(() => {
          const busy = document.querySelector('table')?.getAttribute('aria-busy') === 'true';
          if (start && busy) fetching = true;
          if (start && fetching && !busy) {
            observer.disconnect();
            requestAnimationFrame(() => resolve({ start, end: performance.now() }));
          }
        });
        observer.observe(document.body, { subtree: true, attributes: true, childList: true });
      }),
  );
  await page.getByLabel(control).selectOption(value);
  const { start, end } = await shown;
  const statusCells = page.getByRole('table').locator('tbody td[data-label="Status"]');
  await expect(statusCells).toHaveCount(25);
  if (status) {
    const label = status === 'past_due' ? 'Past due' : status[0]!.toUpperCase() + status.slice(1);
    await expect(statusCells).toHaveText(Array(25).fill(label));
  }
  const fetched = await page.evaluate(() => {
    const entries = performance
      .getEntriesByType('resource')
      .filter((entry) => new URL(entry.name).pathname === '/api/invoices') as PerformanceResourceTiming[];
    const last = entries[entries.length - 1];
    return last ? { start: last.startTime, end: last.responseEnd } : null;
  });
  if (!fetched) throw new Error(`no listing request was made for ${query}`);
  return {
    query,
    shown_ms: end - start,
    fetch_ms: fetched.end - fetched.start,
    before_fetch_ms: fetched.start - start,
    after_fetch_ms: end - fetched.end,
  };
}
