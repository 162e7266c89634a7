import { readFileSync } from 'node:fs';
import { fillCard, openScreen, signIn } from './app';
import { expect, test } from './fixtures';
import { GOOD_CARD, newEmail } from './suite';

// Seed 004's stories in one owner's first day: sign in for the first time (registration),
// add funds, create a client and an invoice, view it, send it and see it delivered, pay it by
// card, and read the wallet's history. Each screen is checked by axe and photographed.
test('a new owner signs in, adds funds, bills a client, sends and is paid', async ({ page, review }) => {
  test.slow(); // a whole day's work: a dozen screens, an email delivered, a card charged

  await page.goto('/');
  await expect(page).toHaveURL(/\/sign-in/);
  await review('sign-in');
  await signIn(page, newEmail('first-day'));
  await expect(page.getByText('No invoices yet.')).toBeVisible();
  await review('invoices-empty');

  // Add funds: the balance is current at once, without a reload.
  await openScreen(page, 'Wallet');
  await expect(page.getByText('Your wallet is empty.')).toBeVisible();
  await page.getByLabel('Amount').fill('25.00');
  await fillCard(page, GOOD_CARD);
  await page.getByRole('button', { name: 'Add funds' }).click();
  await expect(page.getByRole('status').filter({ hasText: 'Added' })).toContainText('424242********4242');
  await expect(page.locator('.balances')).toContainText('$25.00');
  await review('wallet-topped-up');

  // A client, then an invoice of two lines for it.
  await openScreen(page, 'Clients');
  await page.getByLabel('Name').fill('Acme Ltd');
  await page.getByLabel('Email').fill('billing@acme.example');
  await page.getByRole('button', { name: 'Add client' }).click();
  await expect(page.getByRole('region', { name: 'Your clients' })).toContainText('Acme Ltd');
  await review('clients');

  await openScreen(page, 'Invoices');
  await page.getByRole('link', { name: 'New invoice' }).click();
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('New invoice');
  await page.getByLabel('Client', { exact: true }).selectOption({ label: 'Acme Ltd (billing@acme.example)' });
  await page.getByLabel('Description', { exact: true }).fill('November work');
  await page.getByLabel('Due date (optional)').fill('2031-01-31');
  await page.getByLabel('Line 1 description').fill('Design');
  await page.getByLabel('Quantity').fill('1.5');
  await page.getByLabel('Unit price').fill('120.00');
  await expect(page.getByText('Total:')).toContainText('$180.00');
  await review('invoice-new');
  await page.getByRole('button', { name: 'Create invoice' }).click();

  // The invoice: its lines and totals, its due date as the date itself (the browser runs in
  // Los Angeles, where midnight UTC is still the day before).
  await expect(page.getByRole('heading', { level: 1 })).toContainText('Invoice INV-000001');
  await expect(page.getByRole('heading', { level: 1 })).toContainText('Pending');
  await expect(page.getByText('Jan 31, 2031').first()).toBeVisible();
  await expect(page.getByRole('region', { name: 'Lines' })).toContainText('$180.00');
  await review('invoice');

  // Its PDF: previewed in the page (a blob: frame, as the CSP allows) and downloaded.
  await page.getByRole('button', { name: 'Preview PDF' }).click();
  await expect(page.getByTitle('PDF of invoice INV-000001')).toHaveAttribute('src', /^blob:/);
  const [pdf] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('button', { name: 'Download PDF' }).click(),
  ]);
  expect(pdf.suggestedFilename()).toMatch(/\.pdf$/);
  expect(readFileSync(await pdf.path()).subarray(0, 5).toString()).toBe('%PDF-');
  await review('invoice-pdf');

  // Send it: the email goes out through the provider and is delivered (its signed webhook).
  await page.getByRole('button', { name: 'Send by email' }).click();
  const send = page.getByRole('dialog', { name: 'Send invoice INV-000001' });
  await expect(send.getByLabel('Recipient email')).toHaveValue('billing@acme.example');
  await send.getByLabel('Message (optional)').fill('Thank you for your business.');
  await review('invoice-send-dialog');
  await send.getByRole('button', { name: 'Send', exact: true }).click();
  const timeline = page.getByRole('region', { name: 'Emails to billing@acme.example' });
  await expect(timeline.locator('.timeline-email > p')).toContainText('Delivered', { timeout: 60_000 });
  await expect(timeline).toContainText('via sendgrid');
  await review('invoice-delivered');

  // Pay it by card: paid, the card shown masked.
  await page.getByRole('button', { name: 'Pay by card' }).click();
  const pay = page.getByRole('dialog', { name: 'Pay invoice INV-000001' });
  await fillCard(pay.page(), GOOD_CARD);
  await review('invoice-pay-dialog');
  await pay.getByRole('button', { name: 'Pay $180.00' }).click();
  await expect(page.getByRole('heading', { level: 1 })).toContainText('Paid');
  const payments = page.getByRole('region', { name: 'Card payments' });
  await expect(payments).toContainText('424242********4242');
  await expect(payments).not.toContainText(GOOD_CARD);
  await review('invoice-paid');

  // The wallet's history: the top-up and the sending fee, newest first.
  await openScreen(page, 'Wallet');
  const history = page.getByRole('region', { name: 'Transactions' });
  await expect(history.getByRole('row')).toHaveCount(3);
  await expect(history).toContainText('Top-up');
  await expect(history).toContainText('Fee');
  await expect(page.locator('.balances')).toContainText('$24.50');
  await review('wallet-history');

  // The emails across invoices, and the owner's profile.
  await openScreen(page, 'Emails');
  await expect(page.getByRole('table')).toContainText('Delivered');
  await review('emails');
  await openScreen(page, 'Profile');
  await review('profile');
});
