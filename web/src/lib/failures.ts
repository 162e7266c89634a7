// A payment's failure code as a sentence, and whether it was a decline.

const FAILURES: Record<string, string> = {
  declined: 'The card was declined.',
  insufficient_funds: 'The card has insufficient funds.',
  expired_card: 'The card has expired.',
  invalid_card: 'The card details are not valid.',
  invalid_expiry: 'The card expiry is not valid.',
  invalid_name: 'The name on the card is not valid.',
};

// The bank refused the charge (nothing taken): a decline, not an error of the platform's.
const DECLINE_CODES = new Set(['declined', 'insufficient_funds', 'card_declined']);

export function paymentOutcome(payment: { status: string; failure_code?: string | null }): string {
  return payment.status === 'failed' && payment.failure_code && DECLINE_CODES.has(payment.failure_code) ? 'declined' : payment.status;
}

export function failureText(code: string): string {
  const words = code.replace(/_/g, ' ');
  return FAILURES[code] ?? `${words.charAt(0).toUpperCase()}${words.slice(1)}.`;
}
