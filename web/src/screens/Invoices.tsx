import { keepPreviousData, useQuery } from '@tanstack/react-query';
import { useEffect, useState } from 'react';
import { Link, useLocation, useSearchParams } from 'react-router';
import { fetchFile, invoiceApi, saveFile, unwrap } from '../api/client';
import { ErrorAlert } from '../components/ErrorAlert';
import { SelectField, TextField } from '../components/Field';
import { Loading } from '../components/Loading';
import { PageTitle } from '../components/PageTitle';
import { StatusBadge, statusLabel } from '../components/StatusBadge';
import { formatDate, formatMoney } from '../format';
import {
  apiQuery,
  exportPath,
  type ListingState,
  type OrderBy,
  type OrderDir,
  readListing,
  STATUSES,
  writeListing,
} from './invoiceQuery';

const SORTS: [OrderBy, OrderDir, string][] = [
  ['due_date', 'desc', 'Due date, latest first'],
  ['due_date', 'asc', 'Due date, earliest first'],
  ['client_name', 'asc', 'Client, A to Z'],
  ['client_name', 'desc', 'Client, Z to A'],
  ['status', 'asc', 'Status, A to Z'],
  ['status', 'desc', 'Status, Z to A'],
];

const COLUMN_LABELS: Record<OrderBy, string> = { client_name: 'Client', due_date: 'Due date', status: 'Status' };

interface PageTrail {
  trail?: string[];
}

export function Component() {
  const [params, setParams] = useSearchParams();
  const location = useLocation();
  const state = readListing(params);
  const trail = (location.state as PageTrail | null)?.trail ?? [];
  const [search, setSearch] = useState(state.clientName);
  // The back button (or a shared link) changes the URL's search: the box follows it.
  const [searchInUrl, setSearchInUrl] = useState(state.clientName);
  if (state.clientName !== searchInUrl) {
    setSearchInUrl(state.clientName);
    if (search.trim() !== state.clientName) setSearch(state.clientName);
  }
  const [exporting, setExporting] = useState(false);
  const [exportError, setExportError] = useState<unknown>(null);

  const invoices = useQuery({
    queryKey: ['invoices', apiQuery(state)],
    queryFn: ({ signal }) => unwrap(invoiceApi.GET('/api/invoices', { params: { query: apiQuery(state) }, signal })),
    placeholderData: keepPreviousData,
  });

  // A filter change starts again from the first page; it replaces the history entry while
  // typing, so the back button goes to the previous search, not to each keystroke.
  function change(next: Partial<ListingState>, replace = false) {
    setParams(writeListing({ ...state, ...next, cursor: '' }), { replace });
  }

  useEffect(() => {
    if (search.trim() === state.clientName) return;
    const timer = setTimeout(() => change({ clientName: search }, true), 300);
    return () => clearTimeout(timer);
    // eslint-disable-next-line react-hooks/exhaustive-deps -- only the typed text starts it
  }, [search]);

  function sortBy(column: OrderBy) {
    const dir: OrderDir = state.orderBy === column && state.orderDir === 'asc' ? 'desc' : 'asc';
    change({ orderBy: column, orderDir: column === state.orderBy ? dir : column === 'due_date' ? 'desc' : 'asc' });
  }

  async function exportCsv() {
    setExporting(true);
    setExportError(null);
    try {
      saveFile(await fetchFile(exportPath(state)), 'invoices.csv');
    } catch (error) {
      setExportError(error);
    } finally {
      setExporting(false);
    }
  }

  const page = invoices.data;
  const filtered = Boolean(state.clientName || state.status || state.dueDate);
  const nextSearch = page?.next_cursor ? `?${writeListing({ ...state, cursor: page.next_cursor })}` : null;
  const previousSearch = trail.length > 0 ? trail[trail.length - 1]! : null;

  function header(column: OrderBy) {
    const active = state.orderBy === column;
    const sort = active ? (state.orderDir === 'asc' ? 'ascending' : 'descending') : undefined;
    return (
      <th scope="col" aria-sort={sort}>
        <button type="button" className="sort-button" onClick={() => sortBy(column)}>
          {COLUMN_LABELS[column]}
          <span aria-hidden="true">{active ? (state.orderDir === 'asc' ? ' ▲' : ' ▼') : ''}</span>
        </button>
      </th>
    );
  }

  return (
    <section>
      <PageTitle
        title="Invoices"
        actions={
          <>
            <button type="button" className="button-secondary" onClick={exportCsv} disabled={exporting}>
              {exporting ? 'Exporting…' : 'Export CSV'}
            </button>
            <Link className="button button-primary" to="/invoices/new">
              New invoice
            </Link>
          </>
        }
      >
        Invoices
      </PageTitle>
      <ErrorAlert error={exportError} prefix="The export failed." />

      <form className="filters" role="search" aria-label="Filter invoices" onSubmit={(event) => event.preventDefault()}>
        <TextField
          label="Client name"
          type="search"
          value={search}
          placeholder="Starts with…"
          onChange={(event) => setSearch(event.target.value)}
          maxLength={200}
        />
        <SelectField label="Status" value={state.status} onChange={(event) => change({ status: event.target.value as ListingState['status'] })}>
          <option value="">Any status</option>
          {STATUSES.map((status) => (
            <option key={status} value={status}>
              {statusLabel(status)}
            </option>
          ))}
        </SelectField>
        <TextField label="Due on" type="date" value={state.dueDate} onChange={(event) => change({ dueDate: event.target.value })} />
        <SelectField
          label="Sort by"
          value={`${state.orderBy}:${state.orderDir}`}
          onChange={(event) => {
            const [orderBy, orderDir] = event.target.value.split(':') as [OrderBy, OrderDir];
            change({ orderBy, orderDir });
          }}
        >
          {SORTS.map(([by, dir, label]) => (
            <option key={`${by}:${dir}`} value={`${by}:${dir}`}>
              {label}
            </option>
          ))}
        </SelectField>
        {filtered ? (
          <button
            type="button"
            className="button-quiet filters-clear"
            onClick={() => {
              setSearch('');
              setParams(writeListing({ ...state, clientName: '', status: '', dueDate: '', cursor: '' }));
            }}
          >
            Clear filters
          </button>
        ) : null}
      </form>

      <ErrorAlert error={invoices.error} />
      {invoices.isPending ? <Loading what="Loading invoices" /> : null}
      {page ? (
        <>
          <p className="sr-only" role="status">
            {page.items.length === 0 ? 'No invoices.' : `${page.items.length} ${page.items.length === 1 ? 'invoice' : 'invoices'} shown.`}
          </p>
          {page.items.length === 0 ? (
            <div className="empty">
              {filtered ? (
                <p>No invoice matches these filters.</p>
              ) : (
                <p>
                  No invoices yet. <Link to="/invoices/new">Create your first invoice</Link>.
                </p>
              )}
            </div>
          ) : (
            <table className="table responsive-table" aria-busy={invoices.isFetching}>
              <caption className="sr-only">Invoices, sorted by {COLUMN_LABELS[state.orderBy].toLowerCase()}</caption>
              <thead>
                <tr>
                  <th scope="col">Number</th>
                  {header('client_name')}
                  <th scope="col">Description</th>
                  {header('due_date')}
                  <th scope="col" className="numeric">
                    Amount
                  </th>
                  {header('status')}
                </tr>
              </thead>
              <tbody>
                {page.items.map((invoice) => (
                  <tr key={invoice.id}>
                    <td data-label="Number">
                      <Link to={`/invoices/${invoice.id}`}>{invoice.number}</Link>
                    </td>
                    <td data-label="Client">{invoice.client_name}</td>
                    <td data-label="Description" className="truncate">
                      {invoice.description}
                    </td>
                    <td data-label="Due date">{formatDate(invoice.due_date)}</td>
                    <td data-label="Amount" className="numeric">
                      {formatMoney(invoice.amount, invoice.currency)}
                    </td>
                    <td data-label="Status">
                      <StatusBadge status={invoice.status} />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          <nav className="pager" aria-label="Pages">
            {previousSearch !== null ? (
              <Link to={{ pathname: location.pathname, search: previousSearch }} state={{ trail: trail.slice(0, -1) }}>
                ← Previous page
              </Link>
            ) : null}
            {nextSearch ? (
              <Link to={nextSearch} state={{ trail: [...trail, location.search] }}>
                Next page →
              </Link>
            ) : null}
          </nav>
        </>
      ) : null}
    </section>
  );
}
