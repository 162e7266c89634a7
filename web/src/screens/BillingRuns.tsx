import { useInfiniteQuery } from '@tanstack/react-query';
import { Link } from 'react-router';
import { paymentApi, unwrap } from '../api/client';
import { ErrorAlert } from '../components/ErrorAlert';
import { Loading } from '../components/Loading';
import { LoadMore } from '../components/Pager';
import { PageTitle } from '../components/PageTitle';
import { StatusBadge, statusLabel } from '../components/StatusBadge';
import { formatDate, formatDateTime } from '../format';
import { POLL_INTERVAL_MS } from '../lib/polling';

export function runTitle(run: { schedule: string; as_of: string }): string {
  const schedule = run.schedule.charAt(0).toUpperCase() + run.schedule.slice(1);
  return `${schedule} run as of ${formatDate(run.as_of)}`;
}

export function countsText(counts: Record<string, number>): string {
  const parts = Object.entries(counts)
    .filter(([, count]) => count > 0)
    .map(([outcome, count]) => `${count} ${outcome === 'queued' ? 'not tried yet' : statusLabel(outcome).toLowerCase()}`);
  return parts.length > 0 ? parts.join(', ') : 'No invoices of yours';
}

export function Component() {
  const runs = useInfiniteQuery({
    queryKey: ['billing-runs'],
    queryFn: ({ pageParam }) => unwrap(paymentApi.GET('/api/billing-runs', { params: { query: { limit: 25, cursor: pageParam } } })),
    initialPageParam: undefined as string | undefined,
    getNextPageParam: (page) => page.next_cursor ?? undefined,
    refetchInterval: (query) => (query.state.data?.pages.some((page) => page.items.some((run) => run.status === 'charging')) ? POLL_INTERVAL_MS : false),
  });
  const items = runs.data?.pages.flatMap((page) => page.items) ?? [];
  return (
    <section>
      <PageTitle title="Billing runs">Billing runs</PageTitle>
      <p>Each month the invoices of clients with a saved card are charged automatically; failed charges are retried.</p>
      <ErrorAlert error={runs.error} />
      {runs.isPending ? <Loading what="Loading billing runs" /> : null}
      {runs.isSuccess && items.length === 0 ? <p className="muted">No billing run has charged your invoices yet.</p> : null}
      {items.length > 0 ? (
        <table className="table responsive-table">
          <thead>
            <tr>
              <th scope="col">Run</th>
              <th scope="col">Status</th>
              <th scope="col">Started</th>
              <th scope="col">Your invoices</th>
            </tr>
          </thead>
          <tbody>
            {items.map((run) => (
              <tr key={run.id}>
                <td data-label="Run">
                  <Link to={`/billing-runs/${run.id}`}>
                    {runTitle(run)}
                  </Link>
                </td>
                <td data-label="Status">
                  <StatusBadge status={run.status} />
                </td>
                <td data-label="Started">{formatDateTime(run.started_at)}</td>
                <td data-label="Your invoices">{countsText(run.counts)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      <LoadMore hasMore={runs.hasNextPage} loading={runs.isFetchingNextPage} onLoad={() => void runs.fetchNextPage()} />
    </section>
  );
}
