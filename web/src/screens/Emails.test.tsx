import { screen, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it } from 'vitest';
import { json, mockApi } from '../test/api';
import { currentLocation, renderScreen } from '../test/render';
import { Component as Emails } from './Emails';

const email = (id: string, status: string, recipient: string) => ({
  id,
  kind: 'invoice',
  invoice_id: 'inv-1',
  recipient_email: recipient,
  recipient_name: '',
  subject: `Invoice for ${recipient}`,
  status,
  provider: 'mailgun',
  failure_reason: status === 'bounced' ? 'The mailbox does not exist' : null,
  attachment_filename: null,
  created_at: '2026-11-02T10:00:00Z',
  updated_at: '2026-11-02T10:00:05Z',
  history: [],
});

describe('Emails', () => {
  it('asks the API for the chosen status, keeps it in the URL and pages within it', async () => {
    const user = userEvent.setup();
    const api = mockApi({
      'GET /api/emails': (request) => {
        const url = new URL(request.url);
        const statuses = url.searchParams.getAll('status');
        if (statuses.length === 0) {
          return json({ items: [email('1', 'delivered', 'a@example.com'), email('2', 'bounced', 'b@example.com'), email('3', 'failed', 'c@example.com')], next_cursor: null });
        }
        if (url.searchParams.get('cursor') === 'bounced-2') {
          return json({ items: [email('5', 'bounced', 'e@example.com')], next_cursor: null });
        }
        return json({ items: [email('2', 'bounced', 'b@example.com'), email('4', 'bounced', 'd@example.com')], next_cursor: 'bounced-2' });
      },
    });
    renderScreen(<Emails />, { path: '/emails', at: '/emails' });
    expect(await screen.findAllByRole('row')).toHaveLength(4);

    await user.selectOptions(screen.getByRole('combobox', { name: 'Status' }), 'bounced');

    expect(currentLocation()).toBe('/emails?status=bounced');
    expect(await screen.findByRole('status')).toHaveTextContent('2 emails with status Bounced loaded.');
    const rows = screen.getAllByRole('row');
    expect(rows).toHaveLength(3);
    expect(within(rows[1]!).getByText('Bounced')).toHaveClass('badge-bad');
    expect(rows[1]).toHaveTextContent('The mailbox does not exist');
    await user.click(screen.getByRole('button', { name: 'Load older emails' }));
    expect(await screen.findByText('e@example.com')).toBeInTheDocument();
    expect(screen.getByRole('status')).toHaveTextContent('3 emails with status Bounced loaded.');
    const asked = api.callsTo('GET /api/emails').map((call) => call.url.search);
    expect(asked).toEqual(['?limit=100', '?limit=100&status=bounced', '?limit=100&cursor=bounced-2&status=bounced']);
  });

  it('opens a shared link with its status filter, and says when nothing matches', async () => {
    const api = mockApi({ 'GET /api/emails': () => json({ items: [], next_cursor: null }) });
    renderScreen(<Emails />, { path: '/emails', at: '/emails?status=failed' });

    expect(await screen.findByText('No email has the status Failed.')).toBeInTheDocument();
    expect(screen.getByRole('combobox', { name: 'Status' })).toHaveValue('failed');
    expect(api.callsTo('GET /api/emails').map((call) => call.url.searchParams.getAll('status'))).toEqual([['failed']]);
  });

  it('treats an unknown status in the URL as any status, without asking the API for it', async () => {
    const api = mockApi({ 'GET /api/emails': () => json({ items: [email('1', 'sent', 'a@example.com')], next_cursor: null }) });
    renderScreen(<Emails />, { path: '/emails', at: '/emails?status=lost' });

    expect(await screen.findAllByRole('row')).toHaveLength(2);
    expect(screen.getByRole('combobox', { name: 'Status' })).toHaveValue('');
    expect(api.callsTo('GET /api/emails').map((call) => call.url.searchParams.has('status'))).toEqual([false]);
  });
});
