import { QueryClientProvider } from '@tanstack/react-query';
import { render, screen } from '@testing-library/react';
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
});
