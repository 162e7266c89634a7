import { useInfiniteQuery } from '@tanstack/react-query';
import { Link, useParams } from 'react-router';
import { paymentApi, unwrap } from '../api/client';
import { ErrorAlert } from '../components/ErrorAlert';
import { Loading } from '../components/Loading';
import { LoadMore } from '../components/Pager';
import { PageTitle } from '../components/PageTitle';
import { StatusBadge } from '../components/StatusBadge';
import { formatDateTime, formatMoney } from '../format';
import { failureText } from '../lib/failures';
import { POLL_INTERVAL_MS } from '../lib/polling';
import { countsText, runTitle } from './BillingRuns';

export function Component() {
  const { runId = '' } = useParams();
  const run = useInfiniteQuery({
    queryKey: ['billing-runs', runId],
    queryFn: ({ pageParam }) =>
      unwrap(paymentApi.GET('/api/billing-runs/{run_id}', { params: { path: { run_id: runId }, query: { limit: 50, cursor: pageParam } } })),
    initialPageParam: undefined as string | undefined,
    getNextPageParam: (page) => page.next_cursor ?? undefined,
    refetchInterval: (query) => (query.state.data?.pages[0]?.status === 'charging' ? POLL_INTERVAL_MS : false),
  });
  const first = run.data?.pages[0];
  const items = run.data?.pages.flatMap((page) => page.items) ?? [];
  const title = first ? runTitle(first) : 'Billing run';
  return (
    <section>
      <PageTitle title={title}>{title}</PageTitle>
      <p>
        <Link to="/billing-runs">← All billing runs</Link>
      </p>
      <ErrorAlert error={run.error} />
      {run.isPending ? <Loading what="Loading the run" /> : null}
      {first ? (
        <dl className="summary panel">
          <div>
            <dt>Status</dt>
            <dd>
              <StatusBadge status={first.status} />
            </dd>
          </div>
          <div>
            <dt>Started</dt>
            <dd>{formatDateTime(first.started_at)}</dd>
          </div>
          <div>
            <dt>Finished</dt>
            <dd>{first.finished_at ? formatDateTime(first.finished_at) : 'Not yet'}</dd>
          </div>
          <div>
            <dt>Your invoices</dt>
            <dd>{countsText(first.counts)}</dd>
          </div>
        </dl>
      ) : null}
      {items.length > 0 ? (
        <table className="table responsive-table">
          <thead>
            <tr>
              <th scope="col">Invoice</th>
              <th scope="col" className="numeric">
                Amount
              </th>
              <th scope="col">Outcome</th>
              <th scope="col">Attempts</th>
              <th scope="col">Next retry</th>
            </tr>
          </thead>
          <tbody>
            {items.map((item) => (
              <tr key={item.invoice_id}>
                <td data-label="Invoice">
                  <Link to={`/invoices/${item.invoice_id}`}>View invoice</Link>
                </td>
                <td data-label="Amount" className="numeric">
                  {formatMoney(item.amount, item.currency)}
                </td>
                <td data-label="Outcome">
                  {item.outcome ? <StatusBadge status={item.outcome} /> : <span className="muted">Not tried yet</span>}
                  {item.reason ? <span className="reason"> {failureText(item.reason)}</span> : null}
                </td>
                <td data-label="Attempts">{item.attempts}</td>
                <td data-label="Next retry">{item.next_attempt_at ? formatDateTime(item.next_attempt_at) : item.final ? 'None: settled' : '—'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      <LoadMore hasMore={run.hasNextPage} loading={run.isFetchingNextPage} onLoad={() => void run.fetchNextPage()} />
    </section>
  );
}
