import { useInfiniteQuery } from '@tanstack/react-query';
import { Link, useSearchParams } from 'react-router';
import { emailApi, unwrap } from '../api/client';
import { ErrorAlert } from '../components/ErrorAlert';
import { SelectField } from '../components/Field';
import { Loading } from '../components/Loading';
import { LoadMore } from '../components/Pager';
import { PageTitle } from '../components/PageTitle';
import { StatusBadge, statusLabel } from '../components/StatusBadge';
import { formatDateTime } from '../format';
import { emailInFlight, POLL_INTERVAL_MS } from '../lib/polling';

export const plural = (count: number, noun: string) => `${count} ${noun}${count === 1 ? '' : 's'}`;

const STATUSES = ['queued', 'sending', 'sent', 'delivered', 'bounced', 'failed'] as const;

export function Component() {
  const [params, setParams] = useSearchParams();
  const status = params.get('status') ?? '';
  const emails = useInfiniteQuery({
    queryKey: ['emails'],
    queryFn: ({ pageParam }) => unwrap(emailApi.GET('/api/emails', { params: { query: { limit: 100, cursor: pageParam } } })),
    initialPageParam: undefined as string | undefined,
    getNextPageParam: (page) => page.next_cursor ?? undefined,
    refetchInterval: (query) =>
      query.state.data?.pages.some((page) => page.items.some((email) => emailInFlight(email))) ? POLL_INTERVAL_MS : false,
  });
  const all = emails.data?.pages.flatMap((page) => page.items) ?? [];
  // The email API lists by time only; the status filter applies to the pages loaded here.
  const shown = status ? all.filter((email) => email.status === status) : all;

  return (
    <section>
      <PageTitle title="Emails">Emails</PageTitle>
      <form className="filters" aria-label="Filter emails" onSubmit={(event) => event.preventDefault()}>
        <SelectField
          label="Status"
          value={status}
          onChange={(event) => setParams(event.target.value ? { status: event.target.value } : {}, { replace: true })}
        >
          <option value="">Any status</option>
          {STATUSES.map((value) => (
            <option key={value} value={value}>
              {statusLabel(value)}
            </option>
          ))}
        </SelectField>
      </form>
      <ErrorAlert error={emails.error} />
      {emails.isPending ? <Loading what="Loading emails" /> : null}
      {emails.isSuccess ? (
        <p className="muted small" role="status">
          {status ? `${shown.length} of the ${plural(all.length, 'email')} loaded ${shown.length === 1 ? 'is' : 'are'} ${statusLabel(status).toLowerCase()}.` : `${plural(all.length, 'email')} loaded.`}
        </p>
      ) : null}
      {emails.isSuccess && all.length === 0 ? <p className="muted">No email has been sent yet. Send an invoice from its page.</p> : null}
      {shown.length > 0 ? (
        <table className="table responsive-table">
          <thead>
            <tr>
              <th scope="col">Sent</th>
              <th scope="col">To</th>
              <th scope="col">Subject</th>
              <th scope="col">Status</th>
              <th scope="col">Provider</th>
            </tr>
          </thead>
          <tbody>
            {shown.map((email) => (
              <tr key={email.id}>
                <td data-label="Sent">{formatDateTime(email.created_at)}</td>
                <td data-label="To">
                  {email.recipient_name ? `${email.recipient_name} ` : ''}
                  <span className="muted">{email.recipient_email}</span>
                </td>
                <td data-label="Subject">
                  {email.invoice_id ? <Link to={`/invoices/${email.invoice_id}`}>{email.subject}</Link> : email.subject}
                </td>
                <td data-label="Status">
                  <StatusBadge status={email.status} />
                  {email.failure_reason ? <span className="reason"> {email.failure_reason}</span> : null}
                </td>
                <td data-label="Provider">{email.provider ?? '—'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      <LoadMore hasMore={emails.hasNextPage} loading={emails.isFetchingNextPage} onLoad={() => void emails.fetchNextPage()} label="Load older emails" />
    </section>
  );
}
