import { QueryClientProvider } from '@tanstack/react-query';
import { render, screen, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryRouter, Route, Routes, useLocation } from 'react-router';
import { session } from './api/client';
import { Layout } from './Layout';
import { createQueryClient } from './queryClient';
import { json, mockApi } from './test/api';

function SignInProbe() {
  const location = useLocation();
  return <p>Sign-in at {`${location.pathname}${location.search}`}</p>;
}

function renderAt(at: string) {
  render(
    <QueryClientProvider client={createQueryClient()}>
      <MemoryRouter initialEntries={[at]}>
        <Routes>
          <Route path="/sign-in" element={<SignInProbe />} />
          <Route element={<Layout />}>
            <Route path="wallet" element={<h1>Wallet screen</h1>} />
          </Route>
        </Routes>
      </MemoryRouter>
    </QueryClientProvider>,
  );
}

describe('Layout', () => {
  afterEach(() => session.end(false));

  it('sends a user whose session ended to sign-in, keeping where they were', async () => {
    session.end(true);
    renderAt('/wallet?page=2');
    expect(await screen.findByText('Sign-in at /sign-in?next=%2Fwallet%3Fpage%3D2&expired=1')).toBeInTheDocument();
  });

  it('shows the screen with a skip link, navigation and main landmark when signed in', async () => {
    mockApi({ 'POST /api/auth/refresh': () => json({ access_token: 't', expires_in: 900, token_type: 'Bearer', user_id: 'u1' }) });
    await session.refresh();
    renderAt('/wallet');
    expect(screen.getByRole('heading', { name: 'Wallet screen' })).toBeInTheDocument();
    expect(screen.getByRole('link', { name: 'Skip to main content' })).toHaveAttribute('href', '#main');
    expect(screen.getByRole('navigation', { name: 'Main' })).toBeInTheDocument();
    expect(screen.getByRole('main')).toHaveAttribute('id', 'main');
    expect(screen.getByRole('link', { name: 'Wallet' })).toHaveAttribute('aria-current', 'page');
  });

  it('signs out everywhere after confirming, with the access token, then shows sign-in', async () => {
    const api = mockApi({
      'POST /api/auth/refresh': () => json({ access_token: 't', expires_in: 900, token_type: 'Bearer', user_id: 'u1' }),
      'POST /api/auth/logout-all': () => new Response(null, { status: 204 }),
    });
    await session.refresh();
    renderAt('/wallet');
    const user = userEvent.setup();

    await user.click(screen.getByRole('button', { name: 'Sign out everywhere' }));
    const dialog = await screen.findByRole('dialog', { name: 'Sign out everywhere?' });
    expect(api.callsTo('POST /api/auth/logout-all')).toHaveLength(0);
    await user.click(within(dialog).getByRole('button', { name: 'Sign out everywhere' }));

    // Signed out by choice: the sign-in screen does not say the session expired.
    expect(await screen.findByText(/^Sign-in at \/sign-in/)).not.toHaveTextContent('expired');
    const calls = api.callsTo('POST /api/auth/logout-all');
    expect(calls.map((call) => call.headers.get('Authorization'))).toEqual(['Bearer t']);
    expect(api.callsTo('POST /api/auth/logout')).toHaveLength(0);
    expect(session.getState()).toMatchObject({ status: 'signed-out', expired: false });
    expect(session.accessToken()).toBeNull();
  });

  it('keeps the user signed in and says so when signing out everywhere fails', async () => {
    const api = mockApi({
      'POST /api/auth/refresh': () => json({ access_token: 't', expires_in: 900, token_type: 'Bearer', user_id: 'u1' }),
      'POST /api/auth/logout-all': () =>
        json({ type: 'about:blank', title: 'Service unavailable', status: 503, detail: 'The user service is unavailable.' }, 503),
    });
    await session.refresh();
    renderAt('/wallet');
    const user = userEvent.setup();

    await user.click(screen.getByRole('button', { name: 'Sign out everywhere' }));
    await user.click(within(await screen.findByRole('dialog')).getByRole('button', { name: 'Sign out everywhere' }));

    expect(await screen.findByRole('alert')).toHaveTextContent('You are still signed in.');
    expect(api.callsTo('POST /api/auth/logout-all')).toHaveLength(1);
    expect(session.getState().status).toBe('signed-in');
    await user.click(screen.getByRole('button', { name: 'Cancel' }));
    expect(screen.queryByRole('dialog')).not.toBeInTheDocument();
    expect(screen.getByRole('heading', { name: 'Wallet screen' })).toBeInTheDocument();
  });
});
