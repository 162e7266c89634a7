import { screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { useNavigate } from 'react-router';
import { describe, expect, it, vi } from 'vitest';
import { json, mockApi } from '../test/api';
import { currentLocation, renderScreen } from '../test/render';
import { Component as Invoices } from './Invoices';

function invoice(number: string, client: string, due: string, status = 'pending') {
  return {
    id: `id-${number}`,
    number,
    client_id: 1,
    client_name: client,
    description: 'Work',
    amount: '1250.00',
    currency: 'USD',
    status,
    due_date: due,
    version: 1,
    created_at: '2026-11-01T10:00:00Z',
    updated_at: '2026-11-01T10:00:00Z',
    links: { self: '', pdf: '', send: '' },
  };
}

const page = (cursor: string | null) => () =>
  json({ items: [invoice('INV-000002', 'Acme Ltd', '2026-12-31', 'past_due'), invoice('INV-000001', 'Beta LLC', '2026-12-01')], next_cursor: cursor });

function BackButton() {
  const navigate = useNavigate();
  return (
    <>
      <button type="button" onClick={() => navigate(-1)}>
        Back
      </button>
      <Invoices />
    </>
  );
}

describe('Invoices', () => {
  it('asks the API for what the URL says and shows due dates as dates', async () => {
    const api = mockApi({ 'GET /api/invoices': page(null) });
    renderScreen(<Invoices />, { path: '/invoices', at: '/invoices?client_name=Ac&status=past_due&due_date=2026-12-31&order_by=client_name&order_dir=asc' });
    expect(await screen.findByRole('link', { name: 'INV-000002' })).toHaveAttribute('href', '/invoices/id-INV-000002');
    const query = Object.fromEntries(api.callsTo('GET /api/invoices')[0]!.url.searchParams);
    expect(query).toEqual({ client_name: 'Ac', status: 'past_due', due_date: '2026-12-31', order_by: 'client_name', order_dir: 'asc', limit: '25' });
    expect(screen.getByText('Dec 31, 2026')).toBeInTheDocument();
    expect(screen.getByRole('combobox', { name: 'Status' })).toHaveValue('past_due');
    expect(screen.getByRole('columnheader', { name: /Client/ })).toHaveAttribute('aria-sort', 'ascending');
  });

  it('lists newest due date first by default', async () => {
    const api = mockApi({ 'GET /api/invoices': page(null) });
    renderScreen(<Invoices />, { path: '/invoices', at: '/invoices' });
    await screen.findByRole('link', { name: 'INV-000001' });
    const query = Object.fromEntries(api.callsTo('GET /api/invoices')[0]!.url.searchParams);
    expect(query).toMatchObject({ order_by: 'due_date', order_dir: 'desc' });
    expect(screen.getByRole('columnheader', { name: /Due date/ })).toHaveAttribute('aria-sort', 'descending');
  });

  it('keeps filter and sort changes in the URL and starts again from the first page', async () => {
    const user = userEvent.setup();
    mockApi({ 'GET /api/invoices': page('next-1') });
    renderScreen(<Invoices />, { path: '/invoices', at: '/invoices?cursor=abc' });
    await screen.findByRole('link', { name: 'INV-000001' });

    await user.selectOptions(screen.getByRole('combobox', { name: 'Status' }), 'paid');
    expect(currentLocation()).toBe('/invoices?status=paid');
    await user.click(screen.getByRole('button', { name: /Client/ }));
    expect(currentLocation()).toBe('/invoices?status=paid&order_by=client_name&order_dir=asc');
    await user.click(screen.getByRole('button', { name: /Client/ }));
    expect(currentLocation()).toBe('/invoices?status=paid&order_by=client_name');
    await user.type(screen.getByRole('searchbox', { name: 'Client name' }), 'Acm');
    await waitFor(() => expect(currentLocation()).toBe('/invoices?client_name=Acm&status=paid&order_by=client_name'));
  });

  it('puts the search box back to what the URL says after the back button', async () => {
    const user = userEvent.setup();
    mockApi({ 'GET /api/invoices': page(null) });
    renderScreen(<BackButton />, { path: '/invoices', at: '/invoices' });
    const box = await screen.findByRole('searchbox', { name: 'Client name' });
    await user.selectOptions(screen.getByRole('combobox', { name: 'Status' }), 'paid');
    await user.type(box, 'Acme');
    await waitFor(() => expect(currentLocation()).toBe('/invoices?client_name=Acme&status=paid'));
    await user.click(screen.getByRole('button', { name: 'Back' }));
    await waitFor(() => expect(currentLocation()).toBe('/invoices'));
    expect(box).toHaveValue('');
  });

  it('walks cursor pages forward and back', async () => {
    const user = userEvent.setup();
    const api = mockApi({ 'GET /api/invoices': [page('c2'), page('c3'), page(null)] });
    renderScreen(<Invoices />, { path: '/invoices', at: '/invoices?status=pending' });
    await user.click(await screen.findByRole('link', { name: 'Next page →' }));
    expect(currentLocation()).toBe('/invoices?status=pending&cursor=c2');
    await waitFor(() => expect(api.callsTo('GET /api/invoices').at(-1)!.url.searchParams.get('cursor')).toBe('c2'));
    await user.click(await screen.findByRole('link', { name: '← Previous page' }));
    expect(currentLocation()).toBe('/invoices?status=pending');
  });

  it('exports the filtered list as CSV with the same filters', async () => {
    const user = userEvent.setup();
    const api = mockApi({
      'GET /api/invoices': page(null),
      'GET /api/invoices/export.csv': () => new Response('number,client\n', { headers: { 'content-type': 'text/csv' } }),
    });
    const createObjectURL = vi.fn(() => 'blob:csv');
    vi.stubGlobal('URL', Object.assign(URL, { createObjectURL, revokeObjectURL: vi.fn() }));
    renderScreen(<Invoices />, { path: '/invoices', at: '/invoices?status=paid&order_by=status' });
    await user.click(await screen.findByRole('button', { name: 'Export CSV' }));
    await waitFor(() => expect(createObjectURL).toHaveBeenCalled());
    const query = Object.fromEntries(api.callsTo('GET /api/invoices/export.csv')[0]!.url.searchParams);
    expect(query).toEqual({ status: 'paid', order_by: 'status', order_dir: 'desc' });
  });
});
