import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it } from 'vitest';
import { json, mockApi } from '../test/api';
import { renderScreen } from '../test/render';
import { Component as Wallet } from './Wallet';

const entry = (id: number, amount: string, after: string) => ({
  id,
  type: 'topup',
  amount,
  balance_after: after,
  currency: 'USD',
  reference: `r${id}`,
  description: 'Wallet top-up',
  created_at: '2026-11-02T10:00:00Z',
});

describe('Wallet', () => {
  it('shows the new balance and history right after a top-up, without a reload', async () => {
    const user = userEvent.setup();
    const api = mockApi({
      'GET /api/wallet': [() => json({ balances: [{ currency: 'USD', balance: '10.00' }] }), () => json({ balances: [{ currency: 'USD', balance: '35.00' }] })],
      'GET /api/wallet/transactions': [
        () => json({ items: [entry(1, '10.00', '10.00')], next_cursor: null }),
        () => json({ items: [entry(2, '25.00', '35.00'), entry(1, '10.00', '10.00')], next_cursor: null }),
      ],
      'POST /api/wallet/topups': () =>
        json(
          {
            payment: { id: 'p1', kind: 'topup', invoice_id: null, status: 'succeeded', amount: '25.00', currency: 'USD', description: 'Wallet top-up', card: { number: '123456********5678', expiry: '01-2040', name: 'Work Card' }, failure_code: null, created_at: '', updated_at: '' },
            transaction: entry(2, '25.00', '35.00'),
            balance: { currency: 'USD', balance: '35.00' },
          },
          201,
        ),
    });
    renderScreen(<Wallet />);
    const balance = await screen.findByRole('region', { name: 'Balance' });
    await waitFor(() => expect(balance).toHaveTextContent('$10.00'));

    const form = screen.getByRole('region', { name: 'Add funds' });
    await user.type(within(form).getByRole('textbox', { name: 'Amount' }), '25.00');
    await user.type(within(form).getByRole('textbox', { name: 'Card number' }), '1234 5656 7822 5678');
    await user.type(within(form).getByRole('textbox', { name: 'Name on card' }), 'Work Card');
    await user.type(within(form).getByRole('textbox', { name: 'Expiry (MM-YYYY)' }), '01-2040');
    await user.click(within(form).getByRole('button', { name: 'Add funds' }));

    expect(await within(form).findByRole('status')).toHaveTextContent('Added $25.00 with the card 123456********5678.');
    await waitFor(() => expect(balance).toHaveTextContent('$35.00'));
    await waitFor(() => expect(screen.getAllByRole('row')).toHaveLength(3));
    const [topup] = api.callsTo('POST /api/wallet/topups');
    expect(JSON.parse(topup!.body)).toEqual({ amount: '25.00', currency: 'USD', card: { number: '1234 5656 7822 5678', name: 'Work Card', expiry: '01-2040' } });
    expect(topup!.headers.get('Idempotency-Key')).toBeTruthy();
  });

  it('shows a refused card field next to the field', async () => {
    const user = userEvent.setup();
    mockApi({
      'GET /api/wallet': () => json({ balances: [] }),
      'GET /api/wallet/transactions': () => json({ items: [], next_cursor: null }),
      'POST /api/wallet/topups': () =>
        json({ title: 'Invalid input', status: 422, detail: 'Invalid value for: card.number', errors: [{ field: 'card.number', in: 'body', message: 'the provider does not accept this card number' }] }, 422),
    });
    renderScreen(<Wallet />);
    const form = await screen.findByRole('region', { name: 'Add funds' });
    await user.type(within(form).getByRole('textbox', { name: 'Amount' }), '5');
    await user.type(within(form).getByRole('textbox', { name: 'Card number' }), '1111 1111 1111 1111');
    await user.type(within(form).getByRole('textbox', { name: 'Name on card' }), 'A B');
    await user.type(within(form).getByRole('textbox', { name: 'Expiry (MM-YYYY)' }), '12-2039');
    await user.click(within(form).getByRole('button', { name: 'Add funds' }));
    await waitFor(() =>
      expect(within(form).getByRole('textbox', { name: 'Card number' })).toHaveAccessibleDescription('The provider does not accept this card number.'),
    );
  });
});
