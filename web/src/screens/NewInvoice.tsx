import { useQuery, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { Link, useNavigate } from 'react-router';
import { invoiceApi, unwrap } from '../api/client';
import { fieldErrors } from '../api/problem';
import { Dialog } from '../components/Dialog';
import { ErrorAlert } from '../components/ErrorAlert';
import { SelectField, TextField } from '../components/Field';
import { Loading } from '../components/Loading';
import { PageTitle } from '../components/PageTitle';
import { formatMoney } from '../format';
import { useIdempotentSubmit } from '../lib/idempotency';
import * as check from '../lib/validate';
import { NewClientForm } from './Clients';

interface Line {
  description: string;
  quantity: string;
  unit_price: string;
}

export interface InvoiceForm {
  client_id: string;
  description: string;
  currency: string;
  due_date: string;
  lines: Line[];
}

const EMPTY_LINE: Line = { description: '', quantity: '1', unit_price: '' };
const MAX_LINES = 200;

/** The line's amount in cents, as the API rounds it (half up to the cent), or null. */
export function lineCents(line: Line): number | null {
  if (check.quantity(line.quantity) || check.money(line.unit_price)) return null;
  const [whole = '0', fraction = ''] = line.unit_price.trim().split('.');
  const priceCents = Number(whole) * 100 + Number(fraction.padEnd(2, '0'));
  const [qWhole = '0', qFraction = ''] = line.quantity.trim().split('.');
  const quantityThousandths = Number(qWhole) * 1000 + Number(qFraction.padEnd(3, '0'));
  // Integer arithmetic: cents x thousandths, then to cents rounding half up.
  return Math.floor((priceCents * quantityThousandths + 500) / 1000);
}

export function centsText(cents: number): string {
  return `${Math.floor(cents / 100)}.${String(cents % 100).padStart(2, '0')}`;
}

/** Checks the form as the API's InvoiceCreate does; errors keyed as the API names fields. */
export function validateInvoice(form: InvoiceForm): Record<string, string> {
  const errors: Record<string, string> = {};
  if (!form.client_id) errors.client_id = 'Choose a client.';
  const description = check.required(500, 'a description')(form.description);
  if (description) errors.description = description;
  const currency = check.currency(form.currency);
  if (currency) errors.currency = currency;
  const dueDate = check.isoDate(form.due_date);
  if (dueDate) errors.due_date = dueDate;
  if (form.lines.length === 0) errors.lines = 'Add at least one line.';
  form.lines.forEach((line, index) => {
    const lineDescription = check.required(500, 'what this line is for')(line.description);
    if (lineDescription) errors[`lines.${index}.description`] = lineDescription;
    const quantity = check.quantity(line.quantity);
    if (quantity) errors[`lines.${index}.quantity`] = quantity;
    const price = check.money(line.unit_price);
    if (price) errors[`lines.${index}.unit_price`] = price;
  });
  return errors;
}

export function invoiceBody(form: InvoiceForm) {
  return {
    client_id: Number(form.client_id),
    description: form.description.trim(),
    ...(form.currency ? { currency: form.currency } : {}),
    ...(form.due_date ? { due_date: form.due_date } : {}),
    lines: form.lines.map((line) => ({
      description: line.description.trim(),
      quantity: line.quantity.trim(),
      unit_price: line.unit_price.trim(),
    })),
  };
}

const MOST_CLIENT_PAGES = 20;

/** Every client for the picker, page after page (100 a page, up to 2,000). */
async function allClients() {
  const items = [];
  let cursor: string | undefined;
  for (let page = 0; page < MOST_CLIENT_PAGES; page += 1) {
    const answer = await unwrap(invoiceApi.GET('/api/clients', { params: { query: { limit: 100, cursor } } }));
    items.push(...answer.items);
    if (!answer.next_cursor) break;
    cursor = answer.next_cursor;
  }
  return { items };
}

export function Component() {
  const navigate = useNavigate();
  const queryClient = useQueryClient();
  const clients = useQuery({ queryKey: ['clients', 'all'], queryFn: allClients });
  const [addingClient, setAddingClient] = useState(false);
  const [form, setForm] = useState<InvoiceForm>({ client_id: '', description: '', currency: '', due_date: '', lines: [{ ...EMPTY_LINE }] });
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [error, setError] = useState<unknown>(null);
  const { submit, busy } = useIdempotentSubmit();

  const cents = form.lines.map(lineCents);
  const total = cents.every((value) => value !== null) ? cents.reduce<number>((sum, value) => sum + (value ?? 0), 0) : null;
  const currencyShown = form.currency || 'USD';

  function setLine(index: number, change: Partial<Line>) {
    setForm({ ...form, lines: form.lines.map((line, at) => (at === index ? { ...line, ...change } : line)) });
  }

  async function onSubmit(event: React.FormEvent) {
    event.preventDefault();
    const found = validateInvoice(form);
    setErrors(found);
    if (Object.keys(found).length > 0) {
      setError(null);
      return;
    }
    const body = invoiceBody(form);
    setError(null);
    try {
      const created = await submit(body, (key) =>
        unwrap(invoiceApi.POST('/api/invoices', { params: { header: { 'Idempotency-Key': key } }, body })),
      );
      if (created === undefined) return;
      void queryClient.invalidateQueries({ queryKey: ['invoices'] });
      navigate(`/invoices/${created.id}`);
    } catch (caught) {
      setError(caught);
      setErrors(fieldErrors(caught));
    }
  }

  return (
    <section>
      <PageTitle title="New invoice">New invoice</PageTitle>
      {clients.isPending ? <Loading what="Loading your clients" /> : null}
      <ErrorAlert error={clients.error} />
      {clients.data && clients.data.items.length === 0 ? (
        <div className="alert alert-info">
          An invoice is for a client: add your first one with “New client”.
        </div>
      ) : null}
      <form className="form" onSubmit={onSubmit} noValidate>
        <ErrorAlert error={error} />
        <div className="client-picker">
          <SelectField label="Client" value={form.client_id} onChange={(event) => setForm({ ...form, client_id: event.target.value })} error={errors.client_id} required>
            <option value="">Choose a client</option>
            {clients.data?.items.map((client) => (
              <option key={client.id} value={client.id}>
                {client.name} ({client.email})
              </option>
            ))}
          </SelectField>
          <button type="button" className="button-secondary" onClick={() => setAddingClient(true)}>
            New client
          </button>
        </div>
        <TextField label="Description" value={form.description} maxLength={500} onChange={(event) => setForm({ ...form, description: event.target.value })} error={errors.description} required />
        <div className="field-row">
          <TextField label="Due date (optional)" type="date" value={form.due_date} onChange={(event) => setForm({ ...form, due_date: event.target.value })} error={errors.due_date} hint="30 days from today if left empty." />
          <TextField
            label="Currency (optional)"
            value={form.currency}
            maxLength={3}
            placeholder="USD"
            onChange={(event) => setForm({ ...form, currency: event.target.value.toUpperCase() })}
            error={errors.currency}
            hint="Three letters; your default currency if left empty."
          />
        </div>

        <fieldset className="lines">
          <legend>Lines</legend>
          {errors.lines ? <p className="field-error">{errors.lines}</p> : null}
          {form.lines.map((line, index) => (
            <div className="line" key={index}>
              <TextField
                label={`Line ${index + 1} description`}
                value={line.description}
                maxLength={500}
                onChange={(event) => setLine(index, { description: event.target.value })}
                error={errors[`lines.${index}.description`]}
                className="line-description"
              />
              <TextField label="Quantity" inputMode="decimal" value={line.quantity} onChange={(event) => setLine(index, { quantity: event.target.value })} error={errors[`lines.${index}.quantity`]} className="line-quantity" />
              <TextField
                label="Unit price"
                inputMode="decimal"
                placeholder="0.00"
                value={line.unit_price}
                onChange={(event) => setLine(index, { unit_price: event.target.value })}
                error={errors[`lines.${index}.unit_price`]}
                className="line-price"
              />
              <p className="line-amount" aria-label={`Line ${index + 1} amount`}>
                {cents[index] !== null && cents[index] !== undefined ? formatMoney(centsText(cents[index]), currencyShown) : '—'}
              </p>
              {form.lines.length > 1 ? (
                <button type="button" className="button-quiet" onClick={() => setForm({ ...form, lines: form.lines.filter((_, at) => at !== index) })}>
                  Remove line {index + 1}
                </button>
              ) : null}
            </div>
          ))}
          {form.lines.length < MAX_LINES ? (
            <button type="button" className="button-secondary" onClick={() => setForm({ ...form, lines: [...form.lines, { ...EMPTY_LINE }] })}>
              Add a line
            </button>
          ) : null}
        </fieldset>
        <p className="total-line">
          Total: <strong>{total !== null ? formatMoney(centsText(total), currencyShown) : '—'}</strong>
        </p>
        <div className="button-row">
          <button type="submit" className="button-primary" disabled={busy}>
            {busy ? 'Creating…' : 'Create invoice'}
          </button>
          <Link to="/invoices" className="button button-secondary">
            Cancel
          </Link>
        </div>
      </form>
      {addingClient ? (
        <Dialog title="New client" onClose={() => setAddingClient(false)}>
          <NewClientForm
            bare
            onCreated={async (id) => {
              await queryClient.invalidateQueries({ queryKey: ['clients'] });
              setForm((current) => ({ ...current, client_id: String(id) }));
              setAddingClient(false);
            }}
          />
        </Dialog>
      ) : null}
    </section>
  );
}
