import { useInfiniteQuery, useQuery, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { paymentApi, unwrap } from '../api/client';
import { fieldErrors } from '../api/problem';
import { cardBody, CardFields, type CardValues, EMPTY_CARD } from '../components/CardFields';
import { ErrorAlert } from '../components/ErrorAlert';
import { TextField } from '../components/Field';
import { Loading } from '../components/Loading';
import { LoadMore } from '../components/Pager';
import { PageTitle } from '../components/PageTitle';
import { StatusBadge } from '../components/StatusBadge';
import { formatDateTime, formatMoney } from '../format';
import { useIdempotentSubmit } from '../lib/idempotency';
import * as check from '../lib/validate';

export function Component() {
  const wallet = useQuery({ queryKey: ['wallet'], queryFn: () => unwrap(paymentApi.GET('/api/wallet')) });
  const transactions = useInfiniteQuery({
    queryKey: ['wallet', 'transactions'],
    queryFn: ({ pageParam }) => unwrap(paymentApi.GET('/api/wallet/transactions', { params: { query: { limit: 25, cursor: pageParam } } })),
    initialPageParam: undefined as string | undefined,
    getNextPageParam: (page) => page.next_cursor ?? undefined,
  });
  const items = transactions.data?.pages.flatMap((page) => page.items) ?? [];

  return (
    <section>
      <PageTitle title="Wallet">Wallet</PageTitle>
      <div className="grid-2">
        <section aria-labelledby="balance-heading" className="panel">
          <h2 id="balance-heading">Balance</h2>
          <ErrorAlert error={wallet.error} />
          {wallet.isPending ? <Loading what="Loading your balance" /> : null}
          {wallet.data && wallet.data.balances.length === 0 ? <p className="muted">Your wallet is empty. Add funds to pay the fees of sending invoices.</p> : null}
          <ul className="balances" aria-live="polite">
            {wallet.data?.balances.map((balance) => (
              <li key={balance.currency}>
                <span className="balance-amount">{formatMoney(balance.balance, balance.currency)}</span>
                <span className="muted"> {balance.currency}</span>
              </li>
            ))}
          </ul>
        </section>
        <TopupForm />
      </div>
      <section aria-labelledby="history-heading" className="panel">
        <h2 id="history-heading">Transactions</h2>
        <ErrorAlert error={transactions.error} />
        {transactions.isPending ? <Loading what="Loading transactions" /> : null}
        {transactions.isSuccess && items.length === 0 ? <p className="muted">No transactions yet.</p> : null}
        {items.length > 0 ? (
          <table className="table responsive-table">
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Type</th>
                <th scope="col">Description</th>
                <th scope="col" className="numeric">
                  Amount
                </th>
                <th scope="col" className="numeric">
                  Balance after
                </th>
              </tr>
            </thead>
            <tbody>
              {items.map((entry) => (
                <tr key={entry.id}>
                  <td data-label="When">{formatDateTime(entry.created_at)}</td>
                  <td data-label="Type">
                    <StatusBadge status={entry.type} />
                  </td>
                  <td data-label="Description">{entry.description}</td>
                  <td data-label="Amount" className={`numeric ${entry.amount.startsWith('-') ? 'negative' : 'positive'}`}>
                    {formatMoney(entry.amount, entry.currency)}
                  </td>
                  <td data-label="Balance after" className="numeric">
                    {formatMoney(entry.balance_after, entry.currency)}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        ) : null}
        <LoadMore hasMore={transactions.hasNextPage} loading={transactions.isFetchingNextPage} onLoad={() => void transactions.fetchNextPage()} />
      </section>
    </section>
  );
}

function TopupForm() {
  const queryClient = useQueryClient();
  const [amount, setAmount] = useState('');
  const [currency, setCurrency] = useState('USD');
  const [card, setCard] = useState<CardValues>(EMPTY_CARD);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [error, setError] = useState<unknown>(null);
  const [done, setDone] = useState<string | null>(null);
  const { submit, busy } = useIdempotentSubmit();

  async function onSubmit(event: React.FormEvent) {
    event.preventDefault();
    setDone(null);
    const found = {
      ...check.validate({ amount, currency }, { amount: [check.money], currency: [check.required(3, 'a currency'), check.currency] }),
      ...Object.fromEntries(
        Object.entries(
          check.validate(card, {
            number: [check.cardNumber],
            name: [check.required(100, 'the name on the card')],
            expiry: [check.cardExpiry()],
            cvv: [check.cvv],
          }),
        ).map(([key, message]) => [`card.${key}`, message]),
      ),
    } as Record<string, string>;
    setErrors(found);
    if (Object.keys(found).length > 0) return;
    const body = { amount: amount.trim(), currency, card: cardBody(card) };
    setError(null);
    try {
      const topup = await submit(body, (key) =>
        unwrap(paymentApi.POST('/api/wallet/topups', { params: { header: { 'Idempotency-Key': key } }, body })),
      );
      if (topup === undefined) return;
      setAmount('');
      setCard(EMPTY_CARD);
      setDone(
        `Added ${formatMoney(topup.transaction.amount, topup.transaction.currency)} with the card ${topup.payment.card.number}. Balance: ${formatMoney(topup.balance.balance, topup.balance.currency)}.`,
      );
      // The balance and history shown are refetched now, not on the next visit.
      await queryClient.invalidateQueries({ queryKey: ['wallet'] });
      void queryClient.invalidateQueries({ queryKey: ['me'] });
      void queryClient.invalidateQueries({ queryKey: ['payments'] });
    } catch (caught) {
      setError(caught);
      setErrors(fieldErrors(caught));
    }
  }

  const cardErrors = Object.fromEntries(
    Object.entries(errors)
      .filter(([key]) => key.startsWith('card.'))
      .map(([key, message]) => [key.slice(5), message]),
  );

  return (
    <section aria-labelledby="topup-heading" className="panel">
      <h2 id="topup-heading">Add funds</h2>
      <form onSubmit={onSubmit} noValidate>
        {done ? (
          <div className="alert alert-success" role="status">
            {done}
          </div>
        ) : null}
        <ErrorAlert error={error} />
        <div className="field-row">
          <TextField label="Amount" inputMode="decimal" placeholder="25.00" value={amount} onChange={(event) => setAmount(event.target.value)} error={errors.amount} required />
          <TextField label="Currency" value={currency} maxLength={3} onChange={(event) => setCurrency(event.target.value.toUpperCase())} error={errors.currency} required />
        </div>
        <CardFields values={card} errors={cardErrors} onChange={setCard} />
        <button type="submit" className="button-primary" disabled={busy}>
          {busy ? 'Adding funds…' : 'Add funds'}
        </button>
      </form>
    </section>
  );
}
