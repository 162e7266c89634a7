import { readFileSync } from 'node:fs';
import { signIn } from './app';
import { expect, test } from './fixtures';
import { GOOD_CARD, newEmail, post, signInByApi, type Created } from './suite';

const CLIENTS = ['Acme Ltd', 'Acme Holdings', 'Bravo & Co', 'Zulu Supplies'];
const DUE_DATES = ['2031-01-31', '2031-02-28', '2031-03-31'];
const SHOWN_DATES: Record<string, string> = {
  '2031-01-31': 'Jan 31, 2031',
  '2031-02-28': 'Feb 28, 2031',
  '2031-03-31': 'Mar 31, 2031',
};
const COUNT = 30; // more than a page (25)

// Seed 000's listing in the browser: filters and sorts in the URL (reload and back button),
// cursor pages, and the CSV export of what is shown.
test('the invoice list filters, sorts, pages and exports as the owner asks', async ({ page, suite, review, isMobile }) => {
  test.slow();
  const email = newEmail('listing');
  const api = await signInByApi(suite, email);
  const clients: Created[] = [];
  for (const [index, name] of CLIENTS.entries()) {
    clients.push(await post<Created>(api, '/api/clients', { name, email: `c${index}@example.com` }));
  }
  const invoices: Created[] = [];
  for (let n = 0; n < COUNT; n++) {
    invoices.push(
      await post<Created>(api, '/api/invoices', {
        client_id: clients[n % CLIENTS.length]!.id,
        description: `Work package ${n + 1}`,
        amount: `${100 + n}.00`,
        due_date: DUE_DATES[n % DUE_DATES.length],
      }),
    );
  }
  for (const invoice of invoices.slice(0, 3)) await post(api, `/api/invoices/${invoice.id}/void`, {});
  await post(api, `/invoice/pay/${invoices[3]!.id}`, { number: GOOD_CARD, name: 'Acme Ltd', expiry: '01-2040' });
  await api.dispose();

  await signIn(page, email);
  const rows = page.getByRole('table').locator('tbody tr');
  const column = (label: string) => rows.locator(`td[data-label="${label}"]`);

  // Newest due date first by default, a page of 25, then the rest on the next page.
  await expect(rows).toHaveCount(25);
  await expect(column('Due date').first()).toHaveText(SHOWN_DATES['2031-03-31']!);
  await review('invoices');
  await page.getByRole('link', { name: 'Next page →' }).click();
  await expect(rows).toHaveCount(COUNT - 25);
  await expect(column('Due date').last()).toHaveText(SHOWN_DATES['2031-01-31']!);
  await page.getByRole('link', { name: '← Previous page' }).click();
  await expect(rows).toHaveCount(25);

  // Status: the void ones only.
  await page.getByLabel('Status').selectOption('void');
  await expect(page).toHaveURL(/[?&]status=void/);
  await expect(rows).toHaveCount(3);
  await expect(column('Status')).toHaveText(['Void', 'Void', 'Void']);

  // Client names starting with "acme", sorted by client A to Z: the URL holds it all.
  await page.getByLabel('Status').selectOption('');
  await page.getByLabel('Client name').fill('acme');
  await expect(page).toHaveURL(/[?&]client_name=acme/);
  await page.getByLabel('Sort by').selectOption({ label: 'Client, A to Z' });
  await expect(page).toHaveURL(/order_by=client_name&order_dir=asc/);
  // Retried until the new page replaces the previous one (kept on screen while it loads).
  const acmeByName = [...Array(8).fill('Acme Holdings'), ...Array(8).fill('Acme Ltd')];
  await expect(column('Client')).toHaveText(acmeByName);
  await review('invoices-filtered');

  // The back button returns to the previous sort, a reload keeps what the URL says.
  await page.goBack();
  await expect(page).not.toHaveURL(/order_by=/);
  await expect(page.getByLabel('Sort by')).toHaveValue('due_date:desc');
  await page.goForward();
  await page.reload();
  await expect(page.getByLabel('Client name')).toHaveValue('acme');
  await expect(page.getByLabel('Sort by')).toHaveValue('client_name:asc');
  await expect(column('Client')).toHaveText(acmeByName);

  // A due date, shown as that same date in Los Angeles; sorted by status (the column's header).
  await page.getByLabel('Due on').fill('2031-02-28');
  await expect(page).toHaveURL(/due_date=2031-02-28/);
  if (isMobile) {
    // The phone's list is a stack of cards without column headers: the Sort by control.
    await page.getByLabel('Sort by').selectOption({ label: 'Status, A to Z' });
  } else {
    await page.getByRole('button', { name: 'Status' }).click();
  }
  await expect(page).toHaveURL(/order_by=status&order_dir=asc/);
  // Pending before Void (the stored statuses' order), ties by client name.
  await expect(column('Status')).toHaveText([...Array(5).fill('Pending'), 'Void']);
  await expect(column('Due date')).toHaveText(Array(6).fill(SHOWN_DATES['2031-02-28']));

  // The export holds what the filters show, every page of it.
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('button', { name: 'Export CSV' }).click(),
  ]);
  const csv = readFileSync(await download.path(), 'utf8').replace(/^\uFEFF/, '').trim().split('\r\n');
  expect(csv[0]).toBe('number,client_name,description,amount,currency,status,due_date,created_at,source,external_number,id');
  expect(csv).toHaveLength(1 + 6);
  expect(csv.slice(1).every((line) => line.includes(',2031-02-28,'))).toBe(true);

  await page.getByRole('button', { name: 'Clear filters' }).click();
  await expect(rows).toHaveCount(25);
});
