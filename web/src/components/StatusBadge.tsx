const LABELS: Record<string, string> = {
  pending: 'Pending',
  past_due: 'Past due',
  paid: 'Paid',
  void: 'Void',
  failed: 'Failed',
  declined: 'Declined',
  queued: 'Queued',
  sending: 'Sending',
  sent: 'Sent',
  delivered: 'Delivered',
  bounced: 'Bounced',
  processing: 'Processing',
  unknown: 'Being confirmed',
  succeeded: 'Succeeded',
  running: 'Running',
  idle: 'Idle',
  parked: 'Waiting to retry',
  charging: 'Charging',
  waiting_retries: 'Waiting for retries',
  finished: 'Finished',
  retry_scheduled: 'Retry scheduled',
  provider_unavailable: 'Provider unavailable',
  already_paid: 'Already paid',
  no_payment_method: 'No saved card',
  skipped: 'Skipped',
  topup: 'Top-up',
  fee: 'Fee',
  refund: 'Refund',
};

const TONES: Record<string, string> = {
  paid: 'good',
  delivered: 'good',
  succeeded: 'good',
  finished: 'good',
  already_paid: 'good',
  pending: 'neutral',
  queued: 'busy',
  sending: 'busy',
  sent: 'busy',
  processing: 'busy',
  unknown: 'busy',
  running: 'busy',
  charging: 'busy',
  past_due: 'warn',
  parked: 'warn',
  retry_scheduled: 'warn',
  waiting_retries: 'warn',
  provider_unavailable: 'warn',
  failed: 'bad',
  declined: 'bad',
  bounced: 'bad',
  void: 'muted',
  skipped: 'muted',
};

export function statusLabel(status: string): string {
  return LABELS[status] ?? status.replace(/_/g, ' ');
}

/** A status as a word in a coloured pill; the word carries the meaning, not the colour. */
export function StatusBadge({ status }: { status: string }) {
  return <span className={`badge badge-${TONES[status] ?? 'neutral'}`}>{statusLabel(status)}</span>;
}
