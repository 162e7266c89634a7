// The invoice listing's state as it lives in the URL (shareable, and the back button walks
// through it): seed 000's filters and sort, and the page's cursor.

export const STATUSES = ['pending', 'past_due', 'paid', 'void', 'failed'] as const;
export type InvoiceStatus = (typeof STATUSES)[number];
export const ORDER_BY = ['due_date', 'client_name', 'status'] as const;
export type OrderBy = (typeof ORDER_BY)[number];
export type OrderDir = 'asc' | 'desc';

export interface ListingState {
  clientName: string;
  status: InvoiceStatus | '';
  dueDate: string;
  orderBy: OrderBy;
  orderDir: OrderDir;
  cursor: string;
}

export const PAGE_SIZE = 25;

export function readListing(params: URLSearchParams): ListingState {
  const status = params.get('status') ?? '';
  const orderBy = params.get('order_by') ?? '';
  const dueDate = params.get('due_date') ?? '';
  return {
    clientName: params.get('client_name') ?? '',
    status: (STATUSES as readonly string[]).includes(status) ? (status as InvoiceStatus) : '',
    dueDate: /^\d{4}-\d{2}-\d{2}$/.test(dueDate) ? dueDate : '',
    // Newest due date first unless the URL says otherwise: the API's own default.
    orderBy: (ORDER_BY as readonly string[]).includes(orderBy) ? (orderBy as OrderBy) : 'due_date',
    orderDir: params.get('order_dir') === 'asc' ? 'asc' : 'desc',
    cursor: params.get('cursor') ?? '',
  };
}

/** The URL's query for a state; defaults are left out so the plain list is plain /invoices. */
export function writeListing(state: ListingState): URLSearchParams {
  const params = new URLSearchParams();
  if (state.clientName.trim()) params.set('client_name', state.clientName.trim());
  if (state.status) params.set('status', state.status);
  if (state.dueDate) params.set('due_date', state.dueDate);
  if (state.orderBy !== 'due_date') params.set('order_by', state.orderBy);
  if (state.orderDir !== 'desc') params.set('order_dir', state.orderDir);
  if (state.cursor) params.set('cursor', state.cursor);
  return params;
}

/** The API's query for a state: the listing's and the CSV export's parameters. */
export function apiQuery(state: ListingState, withPage = true) {
  return {
    client_name: state.clientName.trim() || undefined,
    status: state.status || undefined,
    due_date: state.dueDate || undefined,
    order_by: state.orderBy,
    order_dir: state.orderDir,
    ...(withPage ? { limit: PAGE_SIZE, cursor: state.cursor || undefined } : {}),
  };
}

export function exportPath(state: ListingState): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(apiQuery(state, false))) {
    if (value !== undefined) params.set(key, String(value));
  }
  return `/api/invoices/export.csv?${params}`;
}
