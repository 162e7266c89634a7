import { fillCard, openScreen, signIn } from './app';
import { expect, test } from './fixtures';
import { BOUNCING_RECIPIENT, DECLINED_CARD, GOOD_CARD, newEmail, post, signInByApi, type Created } from './suite';

/** A new owner with funds and one pending invoice to a client at `clientEmail`. */
async function ownerWithInvoice(suite: Parameters<typeof signInByApi>[0], story: string, clientEmail: string) {
  const email = newEmail(story);
  const api = await signInByApi(suite, email);
  await post(
    api,
    '/api/wallet/topups',
    { amount: '10.00', currency: 'USD', card: { number: GOOD_CARD, name: 'Owner', expiry: '01-2040' } },
    { 'Idempotency-Key': `${story}-topup` },
  );
  const client = await post<Created>(api, '/api/clients', { name: 'Nobody Home Ltd', email: clientEmail });
  const invoice = await post<Created>(api, '/api/invoices', {
    client_id: client.id,
    description: 'Consulting',
    amount: '75.00',
    due_date: '2031-06-30',
  });
  await api.dispose();
  return { email, invoice };
}

test('a bounced email is shown as bounced, never as sent', async ({ page, suite, review }) => {
  const { email, invoice } = await ownerWithInvoice(suite, 'bounce', BOUNCING_RECIPIENT);
  await signIn(page, email, `/invoices/${invoice.id}`);

  await page.getByRole('button', { name: 'Send by email' }).click();
  const send = page.getByRole('dialog', { name: `Send invoice ${invoice.number}` });
  await expect(send.getByLabel('Recipient email')).toHaveValue(BOUNCING_RECIPIENT);
  await send.getByRole('button', { name: 'Send', exact: true }).click();
  const timeline = page.getByRole('region', { name: `Emails to ${BOUNCING_RECIPIENT}` });
  await expect(timeline.locator('.timeline-email > p')).toContainText('Bounced', { timeout: 60_000 });
  await review('invoice-bounced');

  // Every bounce across invoices, found by the emails screen's filter.
  await openScreen(page, 'Emails');
  await page.getByLabel('Status').selectOption('bounced');
  const rows = page.getByRole('table').locator('tbody tr');
  await expect(rows).toHaveCount(1);
  await expect(rows.first()).toContainText(BOUNCING_RECIPIENT);
  await expect(rows.first()).toContainText('Bounced');
  await review('emails-bounced');
});

test('a declined card is shown as declined and the invoice stays unpaid', async ({ page, suite, review }) => {
  const { email, invoice } = await ownerWithInvoice(suite, 'declined', 'payer@example.com');
  await signIn(page, email, `/invoices/${invoice.id}`);

  await page.getByRole('button', { name: 'Pay by card' }).click();
  const pay = page.getByRole('dialog', { name: `Pay invoice ${invoice.number}` });
  await fillCard(page, DECLINED_CARD);
  await pay.getByRole('button', { name: 'Pay $75.00' }).click();
  await expect(pay.getByRole('alert')).toContainText(/declined/i);
  await review('invoice-pay-declined');
  await pay.getByRole('button', { name: 'Cancel' }).click();

  await expect(page.getByRole('heading', { level: 1 })).toContainText('Pending');
  const payments = page.getByRole('region', { name: 'Card payments' });
  const attempt = payments.getByRole('row').filter({ hasText: '400000********0002' });
  await expect(attempt).toHaveCount(1);
  // Declined, with the provider's reason: not a success, and not an error to retry.
  await expect(attempt.locator('td[data-label="Outcome"]')).toContainText('Declined');
  await expect(attempt).toContainText(/insufficient funds/i);
  await expect(attempt).not.toContainText(/Succeeded|Failed/);
  await expect(payments).not.toContainText(DECLINED_CARD);
  await review('invoice-declined');
});

// The screens the stories above do not reach, each checked and photographed.
test('every other screen passes axe', async ({ page, review }) => {
  await signIn(page, newEmail('tour'));
  for (const [name, file] of [
    ['Imports', 'imports'],
    ['Billing runs', 'billing-runs'],
  ] as const) {
    await openScreen(page, name);
    await review(file);
  }
  await page.goto('/no-such-screen');
  await expect(page.getByRole('heading', { level: 1 })).toBeVisible();
  await review('not-found');
});
