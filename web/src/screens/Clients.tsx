import { useInfiniteQuery, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { invoiceApi, unwrap } from '../api/client';
import { fieldErrors } from '../api/problem';
import { ErrorAlert } from '../components/ErrorAlert';
import { TextField } from '../components/Field';
import { Loading } from '../components/Loading';
import { LoadMore } from '../components/Pager';
import { PageTitle } from '../components/PageTitle';
import { formatDateTime } from '../format';
import { useIdempotentSubmit } from '../lib/idempotency';
import { ClientCardsDialog } from './ClientCards';
import * as check from '../lib/validate';

export function Component() {
  const clients = useInfiniteQuery({
    queryKey: ['clients', 'pages'],
    queryFn: ({ pageParam }) => unwrap(invoiceApi.GET('/api/clients', { params: { query: { limit: 50, cursor: pageParam } } })),
    initialPageParam: undefined as string | undefined,
    getNextPageParam: (page) => page.next_cursor ?? undefined,
  });
  const items = clients.data?.pages.flatMap((page) => page.items) ?? [];
  const [cardsOf, setCardsOf] = useState<{ id: number; name: string } | null>(null);

  return (
    <section>
      <PageTitle title="Clients">Clients</PageTitle>
      <div className="grid-2">
        <section aria-labelledby="client-list-heading" className="panel">
          <h2 id="client-list-heading">Your clients</h2>
          <ErrorAlert error={clients.error} />
          {clients.isPending ? <Loading what="Loading clients" /> : null}
          {clients.isSuccess && items.length === 0 ? <p className="muted">No clients yet. Add one to invoice them.</p> : null}
          {items.length > 0 ? (
            <ul className="plain-list">
              {items.map((client) => (
                <li key={client.id} className="client-row">
                  <div>
                    <strong>{client.name}</strong>
                    <br />
                    <span className="muted">{client.email}</span>
                    <span className="muted small"> · added {formatDateTime(client.created_at)}</span>
                  </div>
                  <button type="button" className="button-secondary" onClick={() => setCardsOf(client)}>
                    Cards of {client.name}
                  </button>
                </li>
              ))}
            </ul>
          ) : null}
          <LoadMore hasMore={clients.hasNextPage} loading={clients.isFetchingNextPage} onLoad={() => void clients.fetchNextPage()} />
        </section>
        <NewClientForm />
      </div>
      {cardsOf ? <ClientCardsDialog client={cardsOf} onClose={() => setCardsOf(null)} /> : null}
    </section>
  );
}

/** Adds a client; `bare` leaves out the panel and heading (inside a dialog that has its own). */
export function NewClientForm({ onCreated, bare = false }: { onCreated?: (id: number) => void | Promise<void>; bare?: boolean }) {
  const queryClient = useQueryClient();
  const [name, setName] = useState('');
  const [email, setEmail] = useState('');
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [error, setError] = useState<unknown>(null);
  const [created, setCreated] = useState<string | null>(null);
  const { submit, busy } = useIdempotentSubmit();

  async function onSubmit(event: React.FormEvent) {
    event.preventDefault();
    const found = check.validate({ name, email }, { name: [check.required(200, 'the client’s name')], email: [check.email] });
    setErrors(found as Record<string, string>);
    setCreated(null);
    if (Object.keys(found).length > 0) return;
    const body = { name: name.trim(), email: email.trim() };
    setError(null);
    try {
      const client = await submit(body, (key) =>
        unwrap(invoiceApi.POST('/api/clients', { params: { header: { 'Idempotency-Key': key } }, body })),
      );
      if (client === undefined) return;
      setName('');
      setEmail('');
      setCreated(`${client.name} was added.`);
      void queryClient.invalidateQueries({ queryKey: ['clients'] });
      await onCreated?.(client.id);
    } catch (caught) {
      setError(caught);
      setErrors(fieldErrors(caught));
    }
  }

  const form = (
      <form onSubmit={onSubmit} noValidate>
        {created ? (
          <div className="alert alert-success" role="status">
            {created}
          </div>
        ) : null}
        <ErrorAlert error={error} />
        <TextField label="Name" autoComplete="organization" value={name} maxLength={200} onChange={(event) => setName(event.target.value)} error={errors.name} required />
        <TextField label="Email" type="email" autoComplete="email" value={email} onChange={(event) => setEmail(event.target.value)} error={errors.email} required />
        <button type="submit" className="button-primary" disabled={busy}>
          {busy ? 'Adding…' : 'Add client'}
        </button>
      </form>
  );
  if (bare) return form;
  return (
    <section aria-labelledby="new-client-heading" className="panel">
      <h2 id="new-client-heading">Add a client</h2>
      {form}
    </section>
  );
}
