import { screen, waitFor, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { json, mockApi } from '../test/api';
import { renderScreen } from '../test/render';
import { Component as BillingRun } from './BillingRun';
import { countsText } from './BillingRuns';

const item = (invoice: string, outcome: string | null, changes = {}) => ({
  invoice_id: invoice,
  client_id: 1,
  amount: '120.00',
  currency: 'USD',
  outcome,
  reason: null,
  final: false,
  attempts: 1,
  next_attempt_at: null,
  payment_id: null,
  ...changes,
});

describe('Billing runs', () => {
  it('says what a run did with the owner’s invoices', () => {
    expect(countsText({ paid: 3, retry_scheduled: 1, failed: 0, queued: 2 })).toBe('3 paid, 1 retry scheduled, 2 not tried yet');
    expect(countsText({})).toBe('No invoices of yours');
  });

  it('lists what each invoice of a run was charged, why it failed and when it is retried', async () => {
    mockApi({
      'GET /api/billing-runs/r1': () =>
        json({
          id: 'r1',
          schedule: 'monthly',
          scheduled_for: '2026-12-01T00:00:00Z',
          as_of: '2026-12-01',
          status: 'waiting_retries',
          started_at: '2026-12-01T00:00:05Z',
          finished_at: null,
          counts: { paid: 1, retry_scheduled: 1, failed: 1 },
          items: [
            item('i1', 'paid'),
            item('i2', 'retry_scheduled', { reason: 'insufficient_funds', next_attempt_at: '2026-12-02T00:00:00Z' }),
            item('i3', 'failed', { reason: 'card_expired', final: true, attempts: 4 }),
          ],
          next_cursor: null,
        }),
    });
    renderScreen(<BillingRun />, { path: '/billing-runs/:runId', at: '/billing-runs/r1' });
    await waitFor(() => expect(screen.getByRole('heading', { level: 1 })).toHaveTextContent('Monthly run as of Dec 1, 2026'));
    const rows = screen.getAllByRole('row').slice(1);
    expect(within(rows[1]!).getByText('Retry scheduled')).toBeInTheDocument();
    expect(rows[1]).toHaveTextContent('The card has insufficient funds.');
    expect(rows[1]).toHaveTextContent('Dec 2, 2026');
    expect(within(rows[2]!).getByText('Failed')).toHaveClass('badge-bad');
    expect(rows[2]).toHaveTextContent('None: settled');
  });
});
