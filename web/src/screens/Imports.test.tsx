import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it } from 'vitest';
import { json, mockApi } from '../test/api';
import { renderScreen } from '../test/render';
import { Component as Imports } from './Imports';

const connection = { id: 'c1', base_url: 'https://api.billing.example', created_at: '2026-11-01T10:00:00Z' };
const status = (state: string, changes = {}) => ({
  connection_id: 'c1',
  state,
  phase: 'invoices',
  pages_read: 3,
  invoices_seen: 250,
  invoices_changed: 12,
  invoices_skipped: 1,
  sync_started_at: '2026-11-30T09:00:00Z',
  last_success_at: null,
  last_error: null,
  last_error_at: null,
  next_attempt_at: null,
  ...changes,
});

describe('Imports', () => {
  it('connects a billing platform, without ever showing the key again', async () => {
    const user = userEvent.setup();
    const api = mockApi({
      'GET /api/sync/connections': [() => json({ items: [] }), () => json({ items: [connection] })],
      'POST /api/sync/connections': () => json(connection, 201),
      'GET /api/sync/status': () => json(status('queued')),
    });
    renderScreen(<Imports />);
    const form = await screen.findByRole('region', { name: 'Connect a billing platform' });
    await user.click(within(form).getByRole('button', { name: 'Connect' }));
    expect(within(form).getByLabelText('API key')).toHaveAccessibleDescription(/Enter the API key/);
    await user.type(within(form).getByRole('textbox', { name: 'API address' }), 'https://api.billing.example');
    await user.type(within(form).getByLabelText('API key'), 'sk_live_secret');
    await user.click(within(form).getByRole('button', { name: 'Connect' }));

    const sync = await screen.findByRole('region', { name: 'Sync' });
    await waitFor(() => expect(sync).toHaveTextContent('Queued'));
    expect(JSON.parse(api.callsTo('POST /api/sync/connections')[0]!.body)).toEqual({ base_url: 'https://api.billing.example', api_key: 'sk_live_secret' });
    expect(document.body).not.toHaveTextContent('sk_live_secret');
  });

  it('shows progress while a sync runs, and the last error and next attempt when parked', async () => {
    mockApi({
      'GET /api/sync/connections': () => json({ items: [connection] }),
      'GET /api/sync/status': () =>
        json(status('parked', { last_error: 'The platform answered 503', last_error_at: '2026-11-30T09:01:00Z', next_attempt_at: '2026-11-30T09:06:00Z' })),
    });
    renderScreen(<Imports />);
    const sync = await screen.findByRole('region', { name: 'Sync' });
    await waitFor(() => expect(sync).toHaveTextContent('Waiting to retry'));
    expect(sync).toHaveTextContent('3 pages read, 250 invoices seen, 12 changed, 1 skipped');
    expect(sync).toHaveTextContent('The platform answered 503');
    expect(within(sync).getByText('Next attempt')).toBeInTheDocument();
    expect(screen.getByRole('button', { name: 'Sync now' })).toBeEnabled();
  });
});
