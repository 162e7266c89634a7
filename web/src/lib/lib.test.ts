import { describe, expect, it } from 'vitest';
import { emailInFlight, paymentInFlight, POLL_INTERVAL_MS, pollWhile, syncInFlight } from './polling';
import * as check from './validate';

describe('polling only while something is in flight', () => {
  const now = Date.parse('2026-11-30T10:00:00Z');

  it('watches an email until it is delivered, bounced or failed', () => {
    expect(emailInFlight({ status: 'queued', updated_at: '2026-11-29T10:00:00Z' }, now)).toBe(true);
    expect(emailInFlight({ status: 'sent', updated_at: '2026-11-30T09:58:00Z' }, now)).toBe(true);
    expect(emailInFlight({ status: 'delivered', updated_at: '2026-11-30T09:59:00Z' }, now)).toBe(false);
    expect(emailInFlight({ status: 'bounced', updated_at: '2026-11-30T09:59:00Z' }, now)).toBe(false);
  });

  it('stops watching a sent email whose provider never reports', () => {
    expect(emailInFlight({ status: 'sent', updated_at: '2026-11-30T09:40:00Z' }, now)).toBe(false);
  });

  it('watches payments being processed and syncs queued or running', () => {
    expect(paymentInFlight('processing')).toBe(true);
    expect(paymentInFlight('unknown')).toBe(true);
    expect(paymentInFlight('failed')).toBe(false);
    expect(syncInFlight('running')).toBe(true);
    expect(syncInFlight('parked')).toBe(false);
  });

  it('gives TanStack Query an interval only while the data says so', () => {
    const interval = pollWhile((data: { state: string }) => syncInFlight(data.state));
    expect(interval({ state: { data: { state: 'running' } } })).toBe(POLL_INTERVAL_MS);
    expect(interval({ state: { data: { state: 'idle' } } })).toBe(false);
    expect(interval({ state: { data: undefined } })).toBe(false);
  });
});

describe('the API’s input rules', () => {
  it('takes money as the services do', () => {
    for (const good of ['12.50', '0.01', '1', '9999999999.99']) expect(check.money(good)).toBeNull();
    for (const bad of ['0', '0.00', '012', '1.234', '1e3', '-5', '1,50', '']) expect(check.money(bad)).not.toBeNull();
  });

  it('takes quantities with three decimals, above zero', () => {
    expect(check.quantity('1.5')).toBeNull();
    expect(check.quantity('0.001')).toBeNull();
    expect(check.quantity('0')).toBe('Enter a quantity greater than 0.');
    expect(check.quantity('1.2345')).not.toBeNull();
  });

  it('takes a card number of 12 to 19 digits, spaces allowed, and an expiry not past', () => {
    expect(check.cardNumber('1234 5656 7822 5678')).toBeNull();
    expect(check.cardNumber('1234-5656')).not.toBeNull();
    expect(check.cardNumber('12345678901')).toBe('A card number has 12 to 19 digits.');
    const today = new Date(2026, 10, 30);
    expect(check.cardExpiry(today)('11-2026')).toBeNull();
    expect(check.cardExpiry(today)('10-2026')).toBe('This card has expired.');
    expect(check.cardExpiry(today)('13-2030')).not.toBeNull();
  });

  it('reports the first failing rule of each field', () => {
    expect(check.validate({ name: ' ', email: 'x' }, { name: [check.required(200, 'a name')], email: [check.email] })).toEqual({
      name: 'Enter a name.',
      email: 'Enter an email address such as name@example.com.',
    });
  });
});
