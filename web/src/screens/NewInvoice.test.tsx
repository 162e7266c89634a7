import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it } from 'vitest';
import { json, mockApi } from '../test/api';
import { currentLocation, renderScreen } from '../test/render';
import { Component as NewInvoice, lineCents } from './NewInvoice';

const clients = () => json({ items: [{ id: 7, name: 'Acme Ltd', email: 'billing@acme.example', created_at: '2026-11-01T10:00:00Z' }], next_cursor: null });
const created = () => json({ id: '0197a0b2-0000-7000-8000-000000000001', number: 'INV-000001' }, 201);

async function fillValidInvoice(user: ReturnType<typeof userEvent.setup>) {
  await screen.findByRole('option', { name: /Acme Ltd/ });
  await user.selectOptions(screen.getByRole('combobox', { name: 'Client' }), '7');
  await user.type(screen.getByRole('textbox', { name: 'Description' }), 'November work');
  await user.type(screen.getByRole('textbox', { name: 'Line 1 description' }), 'Design');
  const quantity = screen.getByRole('textbox', { name: 'Quantity' });
  await user.clear(quantity);
  await user.type(quantity, '1.5');
  await user.type(screen.getByRole('textbox', { name: 'Unit price' }), '120.00');
}

describe('New invoice form', () => {
  it('checks the fields as the API does before sending anything', async () => {
    const user = userEvent.setup();
    const api = mockApi({ 'GET /api/clients': clients, 'POST /api/invoices': created });
    renderScreen(<NewInvoice />);
    await screen.findByRole('option', { name: /Acme Ltd/ });
    await user.type(screen.getByRole('textbox', { name: 'Unit price' }), '12.345');
    await user.click(screen.getByRole('button', { name: 'Create invoice' }));

    expect(screen.getByRole('combobox', { name: 'Client' })).toHaveAccessibleDescription('Choose a client.');
    expect(screen.getByRole('textbox', { name: 'Description' })).toHaveAttribute('aria-invalid', 'true');
    expect(screen.getByRole('textbox', { name: 'Unit price' })).toHaveAccessibleDescription(
      'Enter a positive amount with at most two decimals, such as 12.50.',
    );
    expect(api.callsTo('POST /api/invoices')).toHaveLength(0);
  });

  it('shows the API’s field errors next to their fields', async () => {
    const user = userEvent.setup();
    mockApi({
      'GET /api/clients': clients,
      'POST /api/invoices': () =>
        json(
          {
            type: 'about:blank',
            title: 'Invalid input',
            status: 422,
            detail: 'Invalid value for: due_date, lines.0.description',
            errors: [
              { field: 'due_date', in: 'body', message: 'must be a date formatted as Y-m-d' },
              { field: 'lines.0.description', in: 'body', message: 'String should have at most 500 characters' },
            ],
          },
          422,
        ),
    });
    renderScreen(<NewInvoice />);
    await fillValidInvoice(user);
    await user.click(screen.getByRole('button', { name: 'Create invoice' }));

    expect(await screen.findByRole('alert')).toHaveTextContent('Invalid input. Invalid value for: due_date, lines.0.description.');
    expect(screen.getByLabelText('Line 1 description')).toHaveAccessibleDescription('String should have at most 500 characters.');
    expect(screen.getByLabelText('Due date (optional)')).toHaveAccessibleDescription(/Must be a date formatted as Y-m-d\./);
  });

  it('creates one invoice on a double click, with an Idempotency-Key, and opens it', async () => {
    const user = userEvent.setup();
    let answer: (response: Response) => void = () => {};
    const api = mockApi({
      'GET /api/clients': clients,
      'POST /api/invoices': () => new Promise<Response>((resolve) => (answer = resolve)),
    });
    renderScreen(<NewInvoice />, { path: '/invoices/new', at: '/invoices/new' });
    await fillValidInvoice(user);
    const submit = screen.getByRole('button', { name: 'Create invoice' });
    await user.dblClick(submit);
    await waitFor(() => expect(api.callsTo('POST /api/invoices')).toHaveLength(1));
    answer(created());

    await waitFor(() => expect(currentLocation()).toBe('/invoices/0197a0b2-0000-7000-8000-000000000001'));
    const [post] = api.callsTo('POST /api/invoices');
    expect(post!.headers.get('Idempotency-Key')).toMatch(/^[0-9a-f-]{36}$/);
    expect(JSON.parse(post!.body)).toEqual({
      client_id: 7,
      description: 'November work',
      lines: [{ description: 'Design', quantity: '1.5', unit_price: '120.00' }],
    });
  });

  it('sends the same key again when the first answer was lost, and a new one for new content', async () => {
    const user = userEvent.setup();
    const api = mockApi({
      'GET /api/clients': clients,
      'POST /api/invoices': [
        () => Promise.reject(new TypeError('Failed to fetch')),
        () => Promise.reject(new TypeError('Failed to fetch')),
        created,
      ],
    });
    renderScreen(<NewInvoice />);
    await fillValidInvoice(user);
    await user.click(screen.getByRole('button', { name: 'Create invoice' }));
    expect(await screen.findByRole('alert')).toHaveTextContent(/offline/);
    await user.click(screen.getByRole('button', { name: 'Create invoice' }));
    await waitFor(() => expect(api.callsTo('POST /api/invoices')).toHaveLength(2));
    await user.type(screen.getByRole('textbox', { name: 'Description' }), ' and December');
    await user.click(screen.getByRole('button', { name: 'Create invoice' }));
    await waitFor(() => expect(api.callsTo('POST /api/invoices')).toHaveLength(3));

    const keys = api.callsTo('POST /api/invoices').map((call) => call.headers.get('Idempotency-Key'));
    expect(keys[1]).toBe(keys[0]);
    expect(keys[2]).not.toBe(keys[0]);
  });

  it('shows each line’s amount and the total as they are typed', async () => {
    const user = userEvent.setup();
    mockApi({ 'GET /api/clients': clients });
    renderScreen(<NewInvoice />);
    await fillValidInvoice(user);
    expect(screen.getByLabelText('Line 1 amount')).toHaveTextContent('$180.00');
    await user.click(screen.getByRole('button', { name: 'Add a line' }));
    const lines = screen.getByRole('group', { name: 'Lines' });
    await user.type(within(lines).getByRole('textbox', { name: 'Line 2 description' }), 'Hosting');
    await user.type(within(lines).getAllByRole('textbox', { name: 'Unit price' })[1]!, '29.99');
    expect(screen.getByText('Total:')).toHaveTextContent('Total: $209.99');
  });
});

describe('New client from the invoice form', () => {
  it('adds a client in a dialog and picks it', async () => {
    const user = userEvent.setup();
    const api = mockApi({
      'GET /api/clients': [() => json({ items: [], next_cursor: null }), clients],
      'POST /api/clients': () => json({ id: 7, name: 'Acme Ltd', email: 'billing@acme.example', created_at: '2026-11-01T10:00:00Z' }, 201),
    });
    renderScreen(<NewInvoice />);
    await user.click(await screen.findByRole('button', { name: 'New client' }));
    const dialog = screen.getByRole('dialog', { name: 'New client' });
    await user.type(within(dialog).getByRole('textbox', { name: 'Name' }), 'Acme Ltd');
    await user.type(within(dialog).getByRole('textbox', { name: 'Email' }), 'billing@acme.example');
    await user.click(within(dialog).getByRole('button', { name: 'Add client' }));

    await waitFor(() => expect(screen.queryByRole('dialog')).not.toBeInTheDocument());
    await waitFor(() => expect(screen.getByRole('combobox', { name: 'Client' })).toHaveValue('7'));
    expect(api.callsTo('POST /api/clients')[0]!.headers.get('Idempotency-Key')).toBeTruthy();
  });
});

describe('lineCents', () => {
  it('multiplies exactly and rounds half up to the cent', () => {
    expect(lineCents({ description: '', quantity: '1.5', unit_price: '120.00' })).toBe(18000);
    expect(lineCents({ description: '', quantity: '0.333', unit_price: '0.10' })).toBe(3);
    expect(lineCents({ description: '', quantity: '3', unit_price: '0.1' })).toBe(30);
    expect(lineCents({ description: '', quantity: '0', unit_price: '1.00' })).toBeNull();
  });
});
