import { readFileSync } from 'node:fs';
import { request, type APIRequestContext } from '@playwright/test';

/** Where global-setup.ts left the running suite's addresses (a JSON file's path). */
export const ADDRESSES_VARIABLE = 'LEDGERLINE_E2E_ADDRESSES';
/** Mail to this address is accepted by the provider and then reported bounced. */
export const BOUNCING_RECIPIENT = 'bounce@example.com';
/** FakePay's test cards (docs/fakepay.md): any other valid number is charged. */
export const GOOD_CARD = '4242 4242 4242 4242';
export const DECLINED_CARD = '4000 0000 0000 0002';

export interface SuiteAddresses {
  gateway: string;
  provider: string;
  fakepay: string;
  mail: string;
  apis: Record<string, string>;
  databases: Record<string, string>;
  logs: string;
}

export function suiteAddresses(): SuiteAddresses {
  const file = process.env[ADDRESSES_VARIABLE];
  if (!file) throw new Error(`${ADDRESSES_VARIABLE} is not set: global-setup.ts sets it`);
  return JSON.parse(readFileSync(file, 'utf8')) as SuiteAddresses;
}

/** A new subject at the OIDC mock each call: a new user of the platform. */
export function newEmail(story: string): string {
  const unique = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
  return `${story}-${unique}@example.com`;
}

/**
 * The owner's API through the gateway with a bearer token, as a script signs in: the
 * provider's login, its form posted with the subject, the callback's JSON (the same user as
 * a browser signing in with that subject).
 */
export async function signInByApi(suite: SuiteAddresses, email: string): Promise<APIRequestContext> {
  const browser = await request.newContext();
  try {
    const start = await browser.get(`${suite.gateway}/api/auth/mock/login`, { maxRedirects: 0 });
    const form = await browser.post(location(start.headers()), {
      form: { sub: email, action: 'authorize' },
      maxRedirects: 0,
    });
    const done = await browser.get(location(form.headers()), { maxRedirects: 0 });
    if (done.status() !== 200) throw new Error(`callback: ${done.status()} ${await done.text()}`);
    const tokens = (await done.json()) as { access_token: string };
    return await request.newContext({
      baseURL: suite.gateway,
      extraHTTPHeaders: { Authorization: `Bearer ${tokens.access_token}` },
    });
  } finally {
    await browser.dispose();
  }
}

function location(headers: Record<string, string>): string {
  const target = headers['location'];
  if (!target) throw new Error('expected a redirect');
  return target;
}

export interface Created {
  id: string;
  number: string;
}

/** POST a JSON body; fails the test with the problem's text when it is refused. */
export async function post<T>(
  api: APIRequestContext,
  url: string,
  data: unknown,
  headers: Record<string, string> = {},
): Promise<T> {
  const response = await api.post(url, { data, headers });
  if (!response.ok()) throw new Error(`POST ${url}: ${response.status()} ${await response.text()}`);
  return (await response.json()) as T;
}
