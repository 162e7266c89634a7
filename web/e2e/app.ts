import { expect, type Page } from '@playwright/test';

/**
 * Signs in through the app: its sign-in page, the OIDC mock's form (any subject; a new one
 * registers), back through the user service's callback, to where the app was going.
 */
export async function signIn(page: Page, email: string, path = '/invoices'): Promise<void> {
  await page.goto(path);
  await expect(page).toHaveURL(/\/sign-in/);
  await page.getByRole('link', { name: /^Sign in with/ }).click();
  // The provider's own page (oidc-provider-mock), on its own origin.
  await page.getByPlaceholder('sub').fill(email);
  await page.getByRole('button', { name: 'Authorize' }).click();
  await expect(page).toHaveURL(new RegExp(`${path.replace(/[?]/g, '\\?')}$`));
  // Signed in: the app's frame (its skip link) and a screen's heading.
  await expect(page.getByRole('link', { name: 'Skip to main content' })).toBeAttached();
  await expect(page.getByRole('heading', { level: 1 })).toBeVisible();
}

/** Goes to a screen through the main navigation, opening the menu first on a phone. */
export async function openScreen(page: Page, name: string): Promise<void> {
  const menu = page.getByRole('button', { name: 'Menu' });
  if ((await menu.isVisible()) && (await menu.getAttribute('aria-expanded')) !== 'true') {
    await menu.click();
  }
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name, exact: true }).click();
  await expect(page.getByRole('heading', { level: 1 })).toContainText(name);
}

/** Fills the card fields the app shows for a top-up or a payment. */
export async function fillCard(page: Page, number: string, name = 'Jane Owner'): Promise<void> {
  await page.getByLabel('Card number').fill(number);
  await page.getByLabel('Name on card').fill(name);
  await page.getByLabel('Expiry (MM-YYYY)').fill('01-2040');
}
