import { expect, test } from './fixtures';
import { newEmail, post, signInByApi, type Created } from './suite';

test('the gateway serves the app with its cache rules and security headers', async ({ page, request }) => {
  const response = await page.goto('/');
  expect(response?.headers()['cache-control']).toBe('no-cache');
  expect(response?.headers()['content-security-policy']).toContain("script-src 'self'");
  const deepLink = await request.get('/clients?page=2');
  expect(await deepLink.text()).toBe(await response?.text());
  const asset = await page.evaluate(() => document.querySelector('script[src^="/assets/"]')?.getAttribute('src'));
  expect(asset).toBeTruthy();
  const assetResponse = await request.get(asset!);
  expect(assetResponse.headers()['cache-control']).toBe('public, max-age=31536000, immutable');
});

test('the invoices export downloads through the gateway as CSV', async ({ suite, isMobile }) => {
  test.skip(isMobile, 'an API call: the screen size changes nothing');
  const api = await signInByApi(suite, newEmail('export'));
  const client = await post<Created>(api, '/api/clients', { name: '=Acme', email: 'acme@example.com' });
  await post(api, '/api/invoices', { client_id: client.id, description: 'Design', amount: '120.00' });
  const response = await api.get('/api/invoices/export.csv?client_name=%3DAc');
  expect(response.status()).toBe(200);
  expect(response.headers()['content-disposition']).toMatch(/^attachment; filename=invoices-\d{4}-\d{2}-\d{2}\.csv$/);
  const lines = (await response.text()).trim().split('\r\n');
  expect(lines).toHaveLength(2);
  expect(lines[1]).toContain(",'=Acme,Design,120.00,");
  await api.dispose();
});
