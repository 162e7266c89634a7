import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { json, mockApi } from '../test/api';
import { createApiFetch, retryAfterSeconds } from './http';
import { OfflineError } from './problem';
import { RENEW_BEFORE_EXPIRY_SECONDS, Session, safeNext, signInUrl } from './session';

const ORIGIN = window.location.origin;
const tokens = (token: string, expiresIn = 900) => () => json({ access_token: token, expires_in: expiresIn, token_type: 'Bearer', user_id: 'u1' });
const bearer = (request: Request) => request.headers.get('Authorization');

function setup(routes: Parameters<typeof mockApi>[0]) {
  const api = mockApi(routes);
  const session = new Session();
  const onSignInNeeded = vi.fn();
  const sleep = vi.fn(async () => {});
  const apiFetch = createApiFetch({ session, onSignInNeeded, sleep });
  return { ...api, session, onSignInNeeded, sleep, apiFetch };
}

const get = (path: string) => new Request(`${ORIGIN}${path}`);

describe('apiFetch and the session', () => {
  afterEach(() => vi.useRealTimers());

  it('on a 401 refreshes once and retries with the new token', async () => {
    const { apiFetch, callsTo, onSignInNeeded, session } = setup({
      'POST /api/auth/refresh': tokens('fresh'),
      'GET /api/users/me': (request) => (bearer(request) === 'Bearer fresh' ? json({ id: 'u1' }) : json({ title: 'Unauthorized' }, 401)),
    });
    const response = await apiFetch(get('/api/users/me'));
    expect(response.status).toBe(200);
    expect(callsTo('GET /api/users/me').map((call) => call.headers.get('Authorization'))).toEqual([null, 'Bearer fresh']);
    expect(callsTo('POST /api/auth/refresh')).toHaveLength(1);
    expect(onSignInNeeded).not.toHaveBeenCalled();
    expect(session.getState()).toMatchObject({ status: 'signed-in', userId: 'u1' });
  });

  it('after a second 401 gives up and asks for sign-in, without refreshing again', async () => {
    const { apiFetch, callsTo, onSignInNeeded, session } = setup({
      'POST /api/auth/refresh': tokens('fresh'),
      'GET /api/invoices': () => json({ title: 'Unauthorized' }, 401),
    });
    const response = await apiFetch(get('/api/invoices'));
    expect(response.status).toBe(401);
    expect(callsTo('GET /api/invoices')).toHaveLength(2);
    expect(callsTo('POST /api/auth/refresh')).toHaveLength(1);
    expect(onSignInNeeded).toHaveBeenCalledTimes(1);
    expect(session.getState()).toMatchObject({ status: 'signed-out', expired: true });
    expect(session.accessToken()).toBeNull();
  });

  it('asks for sign-in at once when the refresh itself is refused', async () => {
    const { apiFetch, callsTo, onSignInNeeded } = setup({
      'POST /api/auth/refresh': () => json({ title: 'Unauthorized' }, 401),
      'GET /api/wallet': () => json({ title: 'Unauthorized' }, 401),
    });
    expect((await apiFetch(get('/api/wallet'))).status).toBe(401);
    expect(callsTo('GET /api/wallet')).toHaveLength(1);
    expect(onSignInNeeded).toHaveBeenCalledTimes(1);
  });

  it('spends the refresh cookie once for requests that fail together', async () => {
    const { apiFetch, callsTo } = setup({
      'POST /api/auth/refresh': tokens('fresh'),
      'GET /api/wallet': (request) => (bearer(request) ? json({ balances: [] }) : json({ title: 'Unauthorized' }, 401)),
    });
    const answers = await Promise.all([apiFetch(get('/api/wallet')), apiFetch(get('/api/wallet')), apiFetch(get('/api/wallet'))]);
    expect(answers.map((answer) => answer.status)).toEqual([200, 200, 200]);
    expect(callsTo('POST /api/auth/refresh')).toHaveLength(1);
  });

  it('retries a POST with the same body after a refresh', async () => {
    const { apiFetch, callsTo, session } = setup({
      'POST /api/auth/refresh': tokens('fresh'),
      'POST /api/clients': (request) => (bearer(request) === 'Bearer fresh' ? json({ id: 1 }, 201) : json({ title: 'Unauthorized' }, 401)),
    });
    await session.refresh();
    (session as unknown as { token: string }).token = 'stale';
    const request = new Request(`${ORIGIN}/api/clients`, { method: 'POST', body: '{"name":"Acme"}', headers: { 'Idempotency-Key': 'k1' } });
    expect((await apiFetch(request)).status).toBe(201);
    const posts = callsTo('POST /api/clients');
    expect(posts.map((call) => call.body)).toEqual(['{"name":"Acme"}', '{"name":"Acme"}']);
    expect(posts.map((call) => call.headers.get('Idempotency-Key'))).toEqual(['k1', 'k1']);
  });

  it('waits for Retry-After on a 429, then retries', async () => {
    const { apiFetch, sleep, callsTo } = setup({
      'GET /api/emails': [() => json({ title: 'Too many requests' }, 429, { 'Retry-After': '2' }), () => json({ items: [] })],
    });
    expect((await apiFetch(get('/api/emails'))).status).toBe(200);
    expect(sleep).toHaveBeenCalledWith(2000);
    expect(callsTo('GET /api/emails')).toHaveLength(2);
  });

  it('turns a lost connection into OfflineError', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => Promise.reject(new TypeError('Failed to fetch'))));
    const apiFetch = createApiFetch({ session: new Session(), onSignInNeeded: vi.fn() });
    await expect(apiFetch(get('/api/invoices'))).rejects.toBeInstanceOf(OfflineError);
  });

  it('renews the access token in the background before it expires', async () => {
    vi.useFakeTimers();
    const { callsTo, session } = setup({ 'POST /api/auth/refresh': [tokens('first', 900), tokens('second', 900)] });
    await session.refresh();
    expect(session.accessToken()).toBe('first');
    await vi.advanceTimersByTimeAsync((900 - RENEW_BEFORE_EXPIRY_SECONDS) * 1000 - 1000);
    expect(callsTo('POST /api/auth/refresh')).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(2000);
    expect(callsTo('POST /api/auth/refresh')).toHaveLength(2);
    expect(session.accessToken()).toBe('second');
    session.end(false);
  });
});

describe('sign-in addresses', () => {
  beforeEach(() => vi.unstubAllGlobals());

  it('sends the browser to the provider with a way back to where it was', () => {
    const url = new URL(signInUrl('mock', '/invoices?status=paid', 'https://app.example'), 'https://app.example');
    expect(url.pathname).toBe('/api/auth/mock/login');
    expect(url.searchParams.get('redirect_uri')).toBe('https://app.example/signed-in?next=%2Finvoices%3Fstatus%3Dpaid');
  });

  it('never returns to another site', () => {
    expect(safeNext('https://evil.example/')).toBe('/invoices');
    expect(safeNext('//evil.example/')).toBe('/invoices');
    expect(safeNext('/wallet')).toBe('/wallet');
  });

  it('reads Retry-After as seconds or a date, capped', () => {
    expect(retryAfterSeconds('3')).toBe(3);
    expect(retryAfterSeconds(null)).toBe(1);
    expect(retryAfterSeconds('3600')).toBe(30);
    expect(retryAfterSeconds(new Date(10_000).toUTCString(), 5_000)).toBe(5);
  });
});
