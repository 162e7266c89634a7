// Status that is still changing is polled, and only while it changes (docs/decisions.md):
// an email queued or on its way, a payment being processed, a sync running, a billing run
// charging. Everything settled is fetched once and then on focus or after a change.

export const POLL_INTERVAL_MS = 2500;

const EMAIL_IN_FLIGHT = new Set(['queued', 'sending', 'sent']);
// A provider that accepted an email ("sent") usually reports delivery within seconds; one
// that never reports would otherwise keep the page polling for as long as it is open.
const SENT_WATCH_MS = 10 * 60 * 1000;
const PAYMENT_IN_FLIGHT = new Set(['processing', 'unknown']);
const SYNC_IN_FLIGHT = new Set(['queued', 'running']);

export function emailInFlight(email: { status: string; updated_at: string }, now = Date.now()): boolean {
  if (!EMAIL_IN_FLIGHT.has(email.status)) return false;
  return email.status !== 'sent' || now - Date.parse(email.updated_at) < SENT_WATCH_MS;
}
export const paymentInFlight = (status: string): boolean => PAYMENT_IN_FLIGHT.has(status);
export const syncInFlight = (state: string): boolean => SYNC_IN_FLIGHT.has(state);

/** A refetchInterval for TanStack Query: poll while `inFlight` says so, else not at all. */
export function pollWhile<T>(inFlight: (data: T) => boolean) {
  return (query: { state: { data: T | undefined } }): number | false =>
    query.state.data !== undefined && inFlight(query.state.data) ? POLL_INTERVAL_MS : false;
}
