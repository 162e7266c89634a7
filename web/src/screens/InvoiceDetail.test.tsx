import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it } from 'vitest';
import { json, mockApi } from '../test/api';
import { renderScreen } from '../test/render';
import { failureText, paymentOutcome } from '../lib/failures';
import { Component as InvoiceDetail } from './InvoiceDetail';

const ID = '0197a0b2-0000-7000-8000-000000000001';
const detail = (status = 'pending') => () =>
  json({
    id: ID,
    number: 'INV-000001',
    client_id: 7,
    client_name: 'Acme Ltd',
    description: 'November work',
    amount: '209.99',
    currency: 'USD',
    status,
    due_date: '2026-12-31',
    version: 1,
    created_at: '2026-11-01T10:00:00Z',
    updated_at: '2026-11-01T10:00:00Z',
    links: { self: `/api/invoices/${ID}`, pdf: `/api/invoices/${ID}/pdf`, send: `/api/invoices/${ID}/send` },
    lines: [
      { description: 'Design', quantity: '1.5', unit_price: '120.00', amount: '180.00' },
      { description: 'Hosting', quantity: '1', unit_price: '29.99', amount: '29.99' },
    ],
  });

const step = (status: string, provider: string | null, detailText: string | null, at: string) => ({ status, provider, detail: detailText, occurred_at: at });
const emails = () =>
  json({
    items: [
      {
        id: 'e1',
        kind: 'invoice',
        invoice_id: ID,
        recipient_email: 'billing@acme.example',
        recipient_name: 'Acme Ltd',
        subject: 'Invoice INV-000001',
        status: 'bounced',
        provider: 'mailgun',
        failure_reason: 'The mailbox does not exist',
        attachment_filename: 'INV-000001.pdf',
        created_at: '2026-11-02T10:00:00Z',
        updated_at: '2026-11-02T10:00:05Z',
        history: [
          step('queued', null, null, '2026-11-02T10:00:00Z'),
          step('failed', 'sendgrid', 'provider unavailable, trying the next one', '2026-11-02T10:00:01Z'),
          step('sent', 'mailgun', null, '2026-11-02T10:00:02Z'),
          step('bounced', 'mailgun', 'The mailbox does not exist', '2026-11-02T10:00:05Z'),
        ],
      },
    ],
    next_cursor: null,
  });

describe('Invoice detail', () => {
  it('shows lines, total, an email that bounced as bounced with its failover, and a declined attempt', async () => {
    const attempt = {
      id: 'p1',
      kind: 'invoice',
      invoice_id: ID,
      status: 'failed',
      amount: '209.99',
      currency: 'USD',
      description: 'INV-000001',
      card: { number: '400000******0002', expiry: '01-2040', name: 'J Doe' },
      failure_code: 'insufficient_funds',
      created_at: '2026-11-02T11:00:00Z',
      updated_at: '2026-11-02T11:00:00Z',
    };
    const otherInvoice = { ...attempt, id: 'p2', invoice_id: 'another', status: 'succeeded', failure_code: null };
    mockApi({
      [`GET /api/invoices/${ID}`]: detail(),
      [`GET /api/invoices/${ID}/emails`]: emails,
      'GET /api/payments': () => json({ items: [otherInvoice, attempt], next_cursor: null }),
    });
    renderScreen(<InvoiceDetail />, { path: '/invoices/:invoiceId', at: `/invoices/${ID}` });
    expect(await screen.findByRole('heading', { level: 1 })).toHaveTextContent('Invoice INV-000001');
    const lines = screen.getByRole('region', { name: 'Lines' });
    expect(within(lines).getByRole('row', { name: /Total/ })).toHaveTextContent('$209.99');
    const timeline = await screen.findByRole('region', { name: 'Emails to billing@acme.example' });
    expect(within(timeline).getAllByText('Bounced')[0]).toHaveClass('badge-bad');
    expect(within(timeline).queryByText('Delivered')).not.toBeInTheDocument();
    expect(timeline).toHaveTextContent('Failed via sendgrid: provider unavailable, trying the next one');
    expect(timeline).toHaveTextContent('Sent via mailgun');

    const payments = screen.getByRole('region', { name: 'Card payments' });
    await within(payments).findByText('Declined');
    expect(within(payments).getAllByRole('row')).toHaveLength(2);
    expect(payments).toHaveTextContent('400000******0002');
    expect(payments).toHaveTextContent('The card has insufficient funds.');
  });

  it('says a declined card was declined, then shows the masked card once paid', async () => {
    const user = userEvent.setup();
    const api = mockApi({
      [`GET /api/invoices/${ID}`]: [detail('pending'), detail('pending'), detail('paid')],
      [`GET /api/invoices/${ID}/emails`]: () => json({ items: [], next_cursor: null }),
      'GET /api/payments': () => json({ items: [], next_cursor: null }),
      [`POST /invoice/pay/${ID}`]: [
        () => json({ type: 'about:blank', title: 'Card declined', status: 402, detail: 'The card was declined (insufficient funds); nothing was charged', invoice_id: ID }, 402),
        () =>
          json(
            {
              id: ID,
              jobDescription: 'November work',
              customerId: 7,
              amount: 209.99,
              customerName: 'Acme Ltd',
              customerEmail: 'billing@acme.example',
              invoiceStatus: 'PAID',
              card: { number: '123456********5678', expiry: '01-2040', name: 'J Doe' },
            },
            201,
          ),
      ],
    });
    renderScreen(<InvoiceDetail />, { path: '/invoices/:invoiceId', at: `/invoices/${ID}` });
    await user.click(await screen.findByRole('button', { name: 'Pay by card' }));
    const dialog = screen.getByRole('dialog', { name: 'Pay invoice INV-000001' });
    await user.type(within(dialog).getByRole('textbox', { name: 'Card number' }), '4000 0000 0000 0002');
    await user.type(within(dialog).getByRole('textbox', { name: 'Name on card' }), 'J Doe');
    await user.type(within(dialog).getByRole('textbox', { name: 'Expiry (MM-YYYY)' }), '01-2040');
    await user.click(within(dialog).getByRole('button', { name: 'Pay $209.99' }));
    expect(await within(dialog).findByRole('alert')).toHaveTextContent('Card declined. The card was declined (insufficient funds); nothing was charged.');

    const numberField = within(dialog).getByRole('textbox', { name: 'Card number' });
    await user.clear(numberField);
    await user.type(numberField, '1234 5678 1234 5678');
    await user.click(within(dialog).getByRole('button', { name: 'Pay $209.99' }));
    await waitFor(() => expect(screen.queryByRole('dialog')).not.toBeInTheDocument());
    expect(screen.getByRole('status')).toHaveTextContent('Paid with the card 123456********5678.');
    expect(screen.queryByText('1234 5678 1234 5678')).not.toBeInTheDocument();
    const [declined, paid] = api.callsTo(`POST /invoice/pay/${ID}`);
    expect(paymentOutcome({ status: 'failed', failure_code: 'insufficient_funds' })).toBe('declined');
    expect(paymentOutcome({ status: 'failed', failure_code: 'provider_error' })).toBe('failed');
    expect(failureText('provider_error')).toBe('Provider error.');
    expect(JSON.parse(paid!.body)).toEqual({ number: '1234 5678 1234 5678', name: 'J Doe', expiry: '01-2040' });
    expect(paid!.headers.get('Idempotency-Key')).not.toBe(declined!.headers.get('Idempotency-Key'));
  });

  it('sends by email: a wallet too low says how to fix it; then the email appears and is followed', async () => {
    const user = userEvent.setup();
    const queued = {
      id: 'send-1',
      kind: 'invoice',
      invoice_id: ID,
      recipient_email: 'boss@acme.example',
      recipient_name: 'Acme Ltd',
      subject: 'Invoice INV-000001',
      status: 'queued',
      provider: null,
      failure_reason: null,
      attachment_filename: null,
      created_at: '2026-11-02T10:00:00Z',
      updated_at: '2026-11-02T10:00:00Z',
      history: [step('queued', null, null, '2026-11-02T10:00:00Z')],
    };
    const api = mockApi({
      [`GET /api/invoices/${ID}`]: detail(),
      'GET /api/clients/7': () => json({ id: 7, name: 'Acme Ltd', email: 'billing@acme.example', created_at: '2026-11-01T10:00:00Z' }),
      [`GET /api/invoices/${ID}/emails`]: [() => json({ items: [], next_cursor: null }), () => json({ items: [queued], next_cursor: null })],
      'GET /api/payments': () => json({ items: [], next_cursor: null }),
      [`POST /api/invoices/${ID}/send`]: [
        () => json({ type: 'about:blank', title: 'Insufficient balance', status: 402, detail: 'The wallet balance is lower than the fee' }, 402),
        () =>
          json(
            { send_id: 'send-1', status: 'queued', recipient: 'boss@acme.example', fee: '0.50', fee_currency: 'USD', links: { email: '/api/emails/send-1', invoice: `/api/invoices/${ID}` } },
            202,
          ),
      ],
    });
    renderScreen(<InvoiceDetail />, { path: '/invoices/:invoiceId', at: `/invoices/${ID}` });
    await user.click(await screen.findByRole('button', { name: 'Send by email' }));
    const dialog = screen.getByRole('dialog', { name: 'Send invoice INV-000001' });
    const recipient = within(dialog).getByRole('textbox', { name: 'Recipient email' });
    await waitFor(() => expect(recipient).toHaveValue('billing@acme.example'));
    await user.clear(recipient);
    await user.type(recipient, 'boss@acme.example');
    await user.type(within(dialog).getByRole('textbox', { name: 'Message (optional)' }), 'Thank you!');
    await user.click(within(dialog).getByRole('button', { name: 'Send' }));
    expect(await within(dialog).findByRole('alert')).toHaveTextContent('Insufficient balance. The wallet balance is lower than the fee.');
    expect(within(dialog).getByRole('link', { name: 'Add funds to your wallet' })).toHaveAttribute('href', '/wallet');

    await user.click(within(dialog).getByRole('button', { name: 'Send' }));
    await waitFor(() => expect(screen.queryByRole('dialog')).not.toBeInTheDocument());
    expect(screen.getByRole('status')).toHaveTextContent('The invoice is on its way to boss@acme.example. A fee of $0.50 was taken from your wallet');
    const timeline = await screen.findByRole('region', { name: 'Emails to boss@acme.example' });
    expect(within(timeline).getAllByText('Queued')[0]).toHaveClass('badge-busy');
    const sends = api.callsTo(`POST /api/invoices/${ID}/send`);
    expect(JSON.parse(sends[1]!.body)).toEqual({ to: 'boss@acme.example', message: 'Thank you!' });
  });
});
