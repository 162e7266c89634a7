import { useQuery, useQueryClient } from '@tanstack/react-query';
import { useId, useState } from 'react';
import { paymentApi, unwrap } from '../api/client';
import { fieldErrors } from '../api/problem';
import { cardBody, CardFields, type CardValues, EMPTY_CARD } from '../components/CardFields';
import { Dialog } from '../components/Dialog';
import { ErrorAlert } from '../components/ErrorAlert';
import { formatDateTime } from '../format';
import { useIdempotentSubmit } from '../lib/idempotency';
import * as check from '../lib/validate';

/** A client's saved cards for the monthly billing run: the newest is the one charged. */
export function ClientCardsDialog({ client, onClose }: { client: { id: number; name: string }; onClose: () => void }) {
  const queryClient = useQueryClient();
  const queryKey = ['payment-methods', client.id];
  const methods = useQuery({
    queryKey,
    queryFn: () => unwrap(paymentApi.GET('/api/payment-methods', { params: { query: { client_id: client.id, limit: 50 } } })),
  });
  const [card, setCard] = useState<CardValues>(EMPTY_CARD);
  const [consent, setConsent] = useState(false);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const { submit, busy } = useIdempotentSubmit();
  const consentId = useId();

  async function save(event: React.FormEvent) {
    event.preventDefault();
    setNotice(null);
    const found: Record<string, string> = check.validate(card, {
      number: [check.cardNumber],
      name: [check.required(100, 'the name on the card')],
      expiry: [check.cardExpiry()],
      cvv: [check.cvv],
    });
    if (!consent) found.autopay_consent = 'Confirm that the client agreed to automatic charges.';
    setErrors(found);
    if (Object.keys(found).length > 0) return;
    const body = { client_id: client.id, card: cardBody(card), autopay_consent: true as const };
    setError(null);
    try {
      const saved = await submit(body, (key) =>
        unwrap(paymentApi.POST('/api/payment-methods', { params: { header: { 'Idempotency-Key': key } }, body })),
      );
      if (saved === undefined) return;
      setCard(EMPTY_CARD);
      setConsent(false);
      setNotice(`Saved the card ${saved.card.number}. The monthly billing run charges it.`);
      await queryClient.invalidateQueries({ queryKey });
    } catch (caught) {
      setError(caught);
      const fields = fieldErrors(caught);
      setErrors({ ...fields, ...fieldErrors(caught, 'card') });
    }
  }

  async function remove(methodId: string) {
    setError(null);
    setNotice(null);
    try {
      await unwrap(paymentApi.DELETE('/api/payment-methods/{method_id}', { params: { path: { method_id: methodId } } }));
      setNotice('The card was removed.');
      await queryClient.invalidateQueries({ queryKey });
    } catch (caught) {
      setError(caught);
    }
  }

  const cardErrors = { number: errors.number, name: errors.name, expiry: errors.expiry, cvv: errors.cvv };
  return (
    <Dialog title={`Cards of ${client.name}`} onClose={onClose}>
      {notice ? (
        <div className="alert alert-success" role="status">
          {notice}
        </div>
      ) : null}
      <ErrorAlert error={error} />
      <ErrorAlert error={methods.error} />
      {methods.data && methods.data.items.length === 0 ? <p className="muted">No saved card: this client is not charged automatically.</p> : null}
      {methods.data && methods.data.items.length > 0 ? (
        <ul className="plain-list">
          {methods.data.items.map((method, index) => (
            <li key={method.id}>
              <span className="mono">{method.card.number}</span> ({method.card.name}, expires {method.card.expiry})
              {index === 0 ? <strong> · charged monthly</strong> : null}
              <br />
              <span className="muted small">Saved {formatDateTime(method.created_at)}</span>{' '}
              <button type="button" className="button-quiet" onClick={() => void remove(method.id)}>
                Remove card {method.card.number.slice(-4)}
              </button>
            </li>
          ))}
        </ul>
      ) : null}
      <form onSubmit={save} noValidate>
        <h3>Save a card for monthly billing</h3>
        <CardFields values={card} errors={cardErrors} onChange={setCard} />
        <div className="field checkbox">
          <input
            id={consentId}
            type="checkbox"
            checked={consent}
            onChange={(event) => setConsent(event.target.checked)}
            aria-invalid={errors.autopay_consent ? true : undefined}
            aria-describedby={errors.autopay_consent ? `${consentId}-error` : undefined}
          />
          <label htmlFor={consentId}>{client.name} agreed to be charged automatically each month</label>
          {errors.autopay_consent ? (
            <p className="field-error" id={`${consentId}-error`}>
              {errors.autopay_consent}
            </p>
          ) : null}
        </div>
        <div className="button-row">
          <button type="submit" className="button-primary" disabled={busy}>
            {busy ? 'Saving…' : 'Save card'}
          </button>
          <button type="button" className="button-secondary" onClick={onClose}>
            Close
          </button>
        </div>
      </form>
    </Dialog>
  );
}
