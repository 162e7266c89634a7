import { screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it } from 'vitest';
import { json, mockApi } from '../test/api';
import { renderScreen } from '../test/render';
import { Component as Profile } from './Profile';

const me = (changes = {}) => ({
  id: 'u1',
  email: 'owner@example.com',
  name: 'Olive Owner',
  company_name: null,
  address: null,
  wallet_balance: '0.00',
  wallet_currency: 'USD',
  created_at: '2026-11-01T10:00:00Z',
  updated_at: '2026-11-01T10:00:00Z',
  ...changes,
});

describe('Profile', () => {
  it('saves the company and a whole address, and asks for what an address needs', async () => {
    const user = userEvent.setup();
    const api = mockApi({
      'GET /api/users/me': () => json(me()),
      'PATCH /api/users/me': () => json(me({ company_name: 'Owner & Co', updated_at: '2026-11-30T10:00:00Z' })),
    });
    renderScreen(<Profile />);
    await user.type(await screen.findByRole('textbox', { name: 'Company' }), 'Owner & Co');
    await user.type(screen.getByRole('textbox', { name: 'Street address' }), '1 Main St');
    await user.click(screen.getByRole('button', { name: 'Save' }));
    expect(screen.getByRole('textbox', { name: 'City' })).toHaveAccessibleDescription('Enter the city.');
    expect(api.callsTo('PATCH /api/users/me')).toHaveLength(0);

    await user.type(screen.getByRole('textbox', { name: 'City' }), 'Springfield');
    await user.type(screen.getByRole('textbox', { name: 'Country code' }), 'us');
    await user.click(screen.getByRole('button', { name: 'Save' }));
    await waitFor(() => expect(api.callsTo('PATCH /api/users/me')).toHaveLength(1));
    expect(JSON.parse(api.callsTo('PATCH /api/users/me')[0]!.body)).toEqual({
      name: 'Olive Owner',
      company_name: 'Owner & Co',
      email: 'owner@example.com',
      address: { line1: '1 Main St', line2: null, city: 'Springfield', region: null, postal_code: null, country: 'US' },
    });
    expect(await screen.findByRole('status')).toHaveTextContent('Saved.');
  });
});
