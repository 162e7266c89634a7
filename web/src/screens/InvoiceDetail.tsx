import { useQuery, useQueryClient } from '@tanstack/react-query';
import { useEffect, useState } from 'react';
import { Link, useParams } from 'react-router';
import { emailApi, fetchFile, invoiceApi, paymentApi, saveFile, unwrap } from '../api/client';
import type { components as EmailSchemas } from '../api/email';
import type { components as InvoiceSchemas } from '../api/invoice';
import { ApiError, fieldErrors } from '../api/problem';
import { cardBody, CardFields, type CardValues, EMPTY_CARD } from '../components/CardFields';
import { Dialog } from '../components/Dialog';
import { ErrorAlert } from '../components/ErrorAlert';
import { TextAreaField, TextField } from '../components/Field';
import { Loading } from '../components/Loading';
import { PageTitle } from '../components/PageTitle';
import { StatusBadge, statusLabel } from '../components/StatusBadge';
import { formatDate, formatDateTime, formatMoney } from '../format';
import { useIdempotentSubmit } from '../lib/idempotency';
import { emailInFlight, paymentInFlight, POLL_INTERVAL_MS } from '../lib/polling';
import { failureText, paymentOutcome } from '../lib/failures';
import * as check from '../lib/validate';

type Invoice = InvoiceSchemas['schemas']['InvoiceDetail'];
type Email = EmailSchemas['schemas']['EmailRead'];
type MaskedCard = InvoiceSchemas['schemas']['MaskedCard'];

// A FAILED invoice (the billing run gave up) can still be paid by card (docs/decisions.md).
const PAYABLE = new Set(['pending', 'past_due', 'failed']);

export function Component() {
  const { invoiceId = '' } = useParams();
  const queryClient = useQueryClient();
  const [dialog, setDialog] = useState<'send' | 'pay' | 'void' | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [paidWith, setPaidWith] = useState<MaskedCard | null>(null);
  const [awaitedEmails, setAwaitedEmails] = useState<string[]>([]);

  const invoice = useQuery({
    queryKey: ['invoice', invoiceId],
    queryFn: () => unwrap(invoiceApi.GET('/api/invoices/{invoice_id}', { params: { path: { invoice_id: invoiceId } } })),
  });

  const emails = useQuery({
    queryKey: ['invoice-emails', invoiceId],
    queryFn: () =>
      unwrap(
        emailApi.GET('/api/invoices/{invoice_id}/emails', {
          params: { path: { invoice_id: invoiceId }, query: { limit: 100 } },
        }),
      ),
    enabled: invoice.isSuccess,
    // Poll while an email is on its way, and after a send until its record appears.
    refetchInterval: (query) => {
      const items = query.state.data?.items ?? [];
      const waiting = awaitedEmails.some((id) => !items.some((email) => email.id === id));
      return waiting || items.some((email) => emailInFlight(email)) ? POLL_INTERVAL_MS : false;
    },
  });

  const payments = useQuery({
    queryKey: ['payments', 'recent'],
    queryFn: () => unwrap(paymentApi.GET('/api/payments', { params: { query: { limit: 100 } } })),
    enabled: invoice.isSuccess,
    refetchInterval: (query) =>
      query.state.data?.items.some((payment) => payment.invoice_id === invoiceId && paymentInFlight(payment.status))
        ? POLL_INTERVAL_MS
        : false,
  });

  if (invoice.isPending) return <Loading what="Loading the invoice" />;
  if (invoice.isError && !invoice.data) {
    return (
      <section>
        <PageTitle title="Invoice">Invoice</PageTitle>
        <ErrorAlert error={invoice.error} />
        <Link to="/invoices">Back to invoices</Link>
      </section>
    );
  }
  const data = invoice.data;
  const attempts = (payments.data?.items ?? []).filter((payment) => payment.invoice_id === invoiceId);

  function refreshAfterChange() {
    void queryClient.invalidateQueries({ queryKey: ['invoice', invoiceId] });
    void queryClient.invalidateQueries({ queryKey: ['invoices'] });
    void queryClient.invalidateQueries({ queryKey: ['payments'] });
  }

  return (
    <section>
      <PageTitle
        title={`Invoice ${data.number}`}
        actions={
          <>
            {PAYABLE.has(data.status) ? (
              <button type="button" className="button-primary" onClick={() => setDialog('pay')}>
                Pay by card
              </button>
            ) : null}
            {data.status !== 'void' ? (
              <button type="button" className="button-secondary" onClick={() => setDialog('send')}>
                Send by email
              </button>
            ) : null}
            {PAYABLE.has(data.status) ? (
              <button type="button" className="button-quiet" onClick={() => setDialog('void')}>
                Void
              </button>
            ) : null}
          </>
        }
      >
        Invoice {data.number} <StatusBadge status={data.status} />
      </PageTitle>
      <p>
        <Link to="/invoices">← All invoices</Link>
      </p>
      {notice ? (
        <div className="alert alert-success" role="status">
          {notice}
        </div>
      ) : null}
      <ErrorAlert error={invoice.error} prefix="Could not refresh this invoice." />

      <div className="grid-2">
        <InvoiceSummary invoice={data} paidWith={paidWith} />
        <PdfPanel invoice={data} />
      </div>

      <LinesTable invoice={data} />

      <section aria-labelledby="emails-heading" className="panel">
        <h2 id="emails-heading">Emails</h2>
        <ErrorAlert error={emails.error} />
        {emails.isPending ? <Loading what="Loading emails" /> : null}
        <EmailTimeline emails={emails.data?.items ?? []} waiting={awaitedEmails.length > 0 && emails.isFetching} />
      </section>

      <section aria-labelledby="payments-heading" className="panel">
        <h2 id="payments-heading">Card payments</h2>
        <ErrorAlert error={payments.error} />
        {attempts.length === 0 && payments.isSuccess ? <p className="muted">No card payment has been tried for this invoice.</p> : null}
        {attempts.length > 0 ? (
          <table className="table responsive-table">
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Card</th>
                <th scope="col" className="numeric">
                  Amount
                </th>
                <th scope="col">Outcome</th>
              </tr>
            </thead>
            <tbody>
              {attempts.map((payment) => (
                <tr key={payment.id}>
                  <td data-label="When">{formatDateTime(payment.created_at)}</td>
                  <td data-label="Card">
                    <span className="mono">{payment.card.number}</span>
                  </td>
                  <td data-label="Amount" className="numeric">
                    {formatMoney(payment.amount, payment.currency)}
                  </td>
                  <td data-label="Outcome">
                    <StatusBadge status={paymentOutcome(payment)} />
                    {payment.failure_code ? <span className="reason"> {failureText(payment.failure_code)}</span> : null}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        ) : null}
        <p className="muted small">
          Automatic retries of the monthly billing run are listed under <Link to="/billing-runs">Billing runs</Link>.
        </p>
      </section>

      {dialog === 'send' ? (
        <SendDialog
          invoice={data}
          onClose={() => setDialog(null)}
          onSent={(message, emailId) => {
            setDialog(null);
            setNotice(message);
            setAwaitedEmails((ids) => [...ids, emailId]);
            void queryClient.invalidateQueries({ queryKey: ['invoice-emails', invoiceId] });
            void queryClient.invalidateQueries({ queryKey: ['emails'] });
            void queryClient.invalidateQueries({ queryKey: ['wallet'] });
          }}
        />
      ) : null}
      {dialog === 'pay' ? (
        <PayDialog
          invoice={data}
          onClose={() => setDialog(null)}
          onPaid={(card) => {
            setDialog(null);
            setPaidWith(card ?? null);
            setNotice(card ? `Paid with the card ${card.number}.` : 'The invoice is paid.');
            refreshAfterChange();
          }}
          onFailed={refreshAfterChange}
        />
      ) : null}
      {dialog === 'void' ? (
        <VoidDialog
          invoice={data}
          onClose={() => setDialog(null)}
          onVoided={() => {
            setDialog(null);
            setNotice('The invoice is void.');
            refreshAfterChange();
          }}
        />
      ) : null}
    </section>
  );
}

function InvoiceSummary({ invoice, paidWith }: { invoice: Invoice; paidWith: MaskedCard | null }) {
  return (
    <dl className="summary panel">
      <div>
        <dt>Client</dt>
        <dd>{invoice.client_name}</dd>
      </div>
      <div>
        <dt>Description</dt>
        <dd>{invoice.description}</dd>
      </div>
      <div>
        <dt>Amount</dt>
        <dd className="amount">{formatMoney(invoice.amount, invoice.currency)}</dd>
      </div>
      <div>
        <dt>Due date</dt>
        <dd>{formatDate(invoice.due_date)}</dd>
      </div>
      <div>
        <dt>Status</dt>
        <dd>
          <StatusBadge status={invoice.status} />
          {invoice.failure_reason ? <span className="reason"> {invoice.failure_reason}</span> : null}
        </dd>
      </div>
      {paidWith ? (
        <div>
          <dt>Paid with</dt>
          <dd>
            <span className="mono">{paidWith.number}</span> ({paidWith.name}, expires {paidWith.expiry})
          </dd>
        </div>
      ) : null}
      <div>
        <dt>Created</dt>
        <dd>{formatDateTime(invoice.created_at)}</dd>
      </div>
      <div>
        <dt>Last changed</dt>
        <dd>{formatDateTime(invoice.updated_at)}</dd>
      </div>
      {invoice.source ? (
        <div>
          <dt>Imported from</dt>
          <dd>
            {invoice.source}
            {invoice.external_number ? ` (${invoice.external_number})` : ''}
            {invoice.removed_upstream_at ? `, removed there ${formatDateTime(invoice.removed_upstream_at)}` : ''}
          </dd>
        </div>
      ) : null}
    </dl>
  );
}

function LinesTable({ invoice }: { invoice: Invoice }) {
  return (
    <section aria-labelledby="lines-heading" className="panel">
      <h2 id="lines-heading">Lines</h2>
      <table className="table responsive-table">
        <thead>
          <tr>
            <th scope="col">Description</th>
            <th scope="col" className="numeric">
              Quantity
            </th>
            <th scope="col" className="numeric">
              Unit price
            </th>
            <th scope="col" className="numeric">
              Amount
            </th>
          </tr>
        </thead>
        <tbody>
          {invoice.lines.map((line, index) => (
            <tr key={index}>
              <td data-label="Description">{line.description}</td>
              <td data-label="Quantity" className="numeric">
                {line.quantity}
              </td>
              <td data-label="Unit price" className="numeric">
                {formatMoney(line.unit_price, invoice.currency)}
              </td>
              <td data-label="Amount" className="numeric">
                {formatMoney(line.amount, invoice.currency)}
              </td>
            </tr>
          ))}
        </tbody>
        <tfoot>
          <tr>
            <th scope="row" colSpan={3}>
              Total
            </th>
            <td data-label="Total" className="numeric total">
              {formatMoney(invoice.amount, invoice.currency)}
            </td>
          </tr>
        </tfoot>
      </table>
    </section>
  );
}

function PdfPanel({ invoice }: { invoice: Invoice }) {
  const [url, setUrl] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const filename = `${invoice.number}.pdf`;

  useEffect(() => () => {
    if (url) URL.revokeObjectURL(url);
  }, [url]);
  // A new version of the invoice is a new PDF: a preview of the old one is dropped.
  useEffect(() => setUrl(null), [invoice.version]);

  async function load(): Promise<Blob | null> {
    setBusy(true);
    setError(null);
    try {
      return await fetchFile(invoice.links.pdf);
    } catch (caught) {
      setError(caught);
      return null;
    } finally {
      setBusy(false);
    }
  }

  return (
    <section aria-labelledby="pdf-heading" className="panel">
      <h2 id="pdf-heading">PDF</h2>
      <div className="button-row">
        <button
          type="button"
          className="button-secondary"
          disabled={busy}
          onClick={async () => {
            const blob = await load();
            if (blob) setUrl(URL.createObjectURL(blob));
          }}
        >
          {url ? 'Reload preview' : 'Preview PDF'}
        </button>
        <button
          type="button"
          className="button-secondary"
          disabled={busy}
          onClick={async () => {
            const blob = await load();
            if (blob) saveFile(blob, filename);
          }}
        >
          Download PDF
        </button>
      </div>
      {busy ? <Loading what="Preparing the PDF" /> : null}
      <ErrorAlert error={error} />
      {url ? <iframe className="pdf-preview" src={url} title={`PDF of invoice ${invoice.number}`} /> : null}
    </section>
  );
}

/** The emails of this invoice grouped by recipient, each with every status it went through. */
export function EmailTimeline({ emails, waiting }: { emails: Email[]; waiting: boolean }) {
  if (emails.length === 0) {
    return <p className="muted">{waiting ? 'The email is being queued…' : 'This invoice has not been emailed yet.'}</p>;
  }
  const byRecipient = new Map<string, Email[]>();
  for (const email of emails) {
    byRecipient.set(email.recipient_email, [...(byRecipient.get(email.recipient_email) ?? []), email]);
  }
  return (
    <div className="timeline">
      {[...byRecipient.entries()].map(([recipient, sent]) => (
        <section key={recipient} className="timeline-recipient" aria-label={`Emails to ${recipient}`}>
          <h3>{recipient}</h3>
          {sent.map((email) => (
            <div key={email.id} className="timeline-email">
              <p>
                <StatusBadge status={email.status} /> {email.subject}
                {email.provider ? <span className="muted"> via {email.provider}</span> : null}
              </p>
              {email.failure_reason ? <p className="reason">{email.failure_reason}</p> : null}
              <ol className="timeline-steps">
                {email.history.map((step, index) => (
                  <li key={index}>
                    <time dateTime={step.occurred_at}>{formatDateTime(step.occurred_at)}</time>{' '}
                    <strong>{statusLabel(step.status)}</strong>
                    {step.provider ? ` via ${step.provider}` : ''}
                    {step.detail ? <span className="muted">: {step.detail}</span> : null}
                  </li>
                ))}
              </ol>
            </div>
          ))}
        </section>
      ))}
    </div>
  );
}

function SendDialog({
  invoice,
  onClose,
  onSent,
}: {
  invoice: Invoice;
  onClose: () => void;
  onSent: (message: string, emailId: string) => void;
}) {
  const client = useQuery({
    queryKey: ['client', invoice.client_id],
    queryFn: () => unwrap(invoiceApi.GET('/api/clients/{client_id}', { params: { path: { client_id: invoice.client_id } } })),
  });
  const [to, setTo] = useState<string | null>(null);
  const [message, setMessage] = useState('');
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [error, setError] = useState<unknown>(null);
  const { submit, busy } = useIdempotentSubmit();
  const recipient = to ?? client.data?.email ?? '';

  async function onSubmit(event: React.FormEvent) {
    event.preventDefault();
    const found = check.validate({ to: recipient, message }, { to: [check.email], message: [(value) => (value.length > 2000 ? 'Use at most 2000 characters.' : null)] });
    setErrors(found as Record<string, string>);
    if (Object.keys(found).length > 0) return;
    const body = { to: recipient.trim(), ...(message.trim() ? { message: message.trim() } : {}) };
    setError(null);
    try {
      const sent = await submit(body, (key) =>
        unwrap(
          invoiceApi.POST('/api/invoices/{invoice_id}/send', {
            params: { path: { invoice_id: invoice.id }, header: { 'Idempotency-Key': key } },
            body,
          }),
        ),
      );
      if (sent === undefined) return;
      onSent(
        `The invoice is on its way to ${sent.recipient}. A fee of ${formatMoney(sent.fee, sent.fee_currency)} was taken from your wallet; it is given back if the email fails.`,
        sent.send_id,
      );
    } catch (caught) {
      setError(caught);
      setErrors(fieldErrors(caught));
    }
  }

  return (
    <Dialog title={`Send invoice ${invoice.number}`} onClose={onClose}>
      <form onSubmit={onSubmit} noValidate>
        <ErrorAlert error={error} />
        {error instanceof ApiError && error.status === 402 ? (
          <p>
            Sending costs a small fee from your wallet. <Link to="/wallet">Add funds to your wallet</Link>, then send again.
          </p>
        ) : null}
        <TextField label="Recipient email" type="email" autoComplete="email" value={recipient} onChange={(event) => setTo(event.target.value)} error={errors.to} required />
        <TextAreaField label="Message (optional)" rows={4} maxLength={2000} value={message} onChange={(event) => setMessage(event.target.value)} error={errors.message} hint="Shown above the invoice in the email." />
        <div className="button-row">
          <button type="submit" className="button-primary" disabled={busy}>
            {busy ? 'Sending…' : 'Send'}
          </button>
          <button type="button" className="button-secondary" onClick={onClose}>
            Cancel
          </button>
        </div>
      </form>
    </Dialog>
  );
}

function PayDialog({
  invoice,
  onClose,
  onPaid,
  onFailed,
}: {
  invoice: Invoice;
  onClose: () => void;
  onPaid: (card: MaskedCard | undefined) => void;
  onFailed: () => void;
}) {
  const [card, setCard] = useState<CardValues>(EMPTY_CARD);
  const [errors, setErrors] = useState<Partial<Record<keyof CardValues, string>>>({});
  const [error, setError] = useState<unknown>(null);
  const { submit, busy } = useIdempotentSubmit();

  async function onSubmit(event: React.FormEvent) {
    event.preventDefault();
    const found = check.validate(
      { number: card.number, name: card.name, expiry: card.expiry },
      { number: [check.cardNumber], name: [check.required(100, 'the name on the card')], expiry: [check.cardExpiry()] },
    );
    setErrors(found);
    if (Object.keys(found).length > 0) return;
    const { number, name, expiry } = cardBody(card);
    const body = { number, name, expiry };
    setError(null);
    try {
      const paid = await submit(body, (key) =>
        unwrap(
          invoiceApi.POST('/invoice/pay/{invoice_id}', {
            params: { path: { invoice_id: invoice.id }, header: { 'Idempotency-Key': key } },
            body,
          }),
        ),
      );
      if (paid === undefined) return;
      onPaid(paid.card ?? undefined);
    } catch (caught) {
      setError(caught);
      setErrors({ ...fieldErrors(caught), ...fieldErrors(caught, 'card') });
      onFailed();
    }
  }

  return (
    <Dialog title={`Pay invoice ${invoice.number}`} onClose={onClose}>
      <form onSubmit={onSubmit} noValidate>
        <p>
          Amount to pay: <strong>{formatMoney(invoice.amount, invoice.currency)}</strong>
        </p>
        <ErrorAlert error={error} />
        <CardFields values={card} errors={errors} onChange={setCard} withCvv={false} />
        <p className="muted small">The card is sent to the card provider and never stored; only its masked number is kept.</p>
        <div className="button-row">
          <button type="submit" className="button-primary" disabled={busy}>
            {busy ? 'Paying…' : `Pay ${formatMoney(invoice.amount, invoice.currency)}`}
          </button>
          <button type="button" className="button-secondary" onClick={onClose}>
            Cancel
          </button>
        </div>
      </form>
    </Dialog>
  );
}

function VoidDialog({ invoice, onClose, onVoided }: { invoice: Invoice; onClose: () => void; onVoided: () => void }) {
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  async function confirm() {
    setBusy(true);
    setError(null);
    try {
      await unwrap(invoiceApi.POST('/api/invoices/{invoice_id}/void', { params: { path: { invoice_id: invoice.id } } }));
      onVoided();
    } catch (caught) {
      setError(caught);
    } finally {
      setBusy(false);
    }
  }
  return (
    <Dialog title={`Void invoice ${invoice.number}?`} onClose={onClose}>
      <p>A void invoice can no longer be paid or sent. This cannot be undone.</p>
      <ErrorAlert error={error} />
      <div className="button-row">
        <button type="button" className="button-danger" onClick={confirm} disabled={busy}>
          {busy ? 'Voiding…' : 'Void invoice'}
        </button>
        <button type="button" className="button-secondary" onClick={onClose}>
          Cancel
        </button>
      </div>
    </Dialog>
  );
}
