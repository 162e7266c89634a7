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
  it('finds every bounce among the emails, with the reason, and keeps the filter in the URL', async () => {
    const user = userEvent.setup();
    mockApi({
      'GET /api/emails': () =>
        json({ items: [email('1', 'delivered', 'a@example.com'), email('2', 'bounced', 'b@example.com'), email('3', 'failed', 'c@example.com')], next_cursor: null }),
    });
    renderScreen(<Emails />, { path: '/emails', at: '/emails' });
    expect(await screen.findAllByRole('row')).toHaveLength(4);
    await user.selectOptions(screen.getByRole('combobox', { name: 'Status' }), 'bounced');
    expect(currentLocation()).toBe('/emails?status=bounced');
    const rows = screen.getAllByRole('row');
    expect(rows).toHaveLength(2);
    expect(within(rows[1]!).getByText('Bounced')).toHaveClass('badge-bad');
    expect(rows[1]).toHaveTextContent('The mailbox does not exist');
    expect(screen.getByRole('status')).toHaveTextContent('1 of the 3 emails loaded is bounced.');
  });
});
