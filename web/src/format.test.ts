import { afterEach, describe, expect, it } from 'vitest';
import { addDays, formatDate, formatMoney, parseCalendarDate } from './format';

const originalZone = process.env.TZ;

afterEach(() => {
  process.env.TZ = originalZone;
});

describe('formatDate', () => {
  it('shows a due date as the same calendar day west of UTC', () => {
    process.env.TZ = 'Pacific/Honolulu';
    // What the naive reading does there: midnight UTC is the previous evening.
    expect(new Date('2026-12-31').getDate()).toBe(30);
    expect(formatDate('2026-12-31', 'en-GB')).toBe('31 Dec 2026');
  });

  it('shows a due date as the same calendar day east of UTC', () => {
    process.env.TZ = 'Pacific/Kiritimati';
    expect(formatDate('2027-01-01', 'en-US')).toBe('Jan 1, 2027');
  });

  it('leaves anything that is not a date as it is', () => {
    expect(formatDate('soon')).toBe('soon');
    expect(parseCalendarDate('2026-02-30')).toBeNull();
  });

  it('adds days on the calendar across a daylight-saving change', () => {
    process.env.TZ = 'Europe/London';
    expect(addDays('2026-03-28', 2)).toBe('2026-03-30');
    expect(addDays('2026-12-31', 1)).toBe('2027-01-01');
  });
});

describe('formatMoney', () => {
  it('writes the API amount with its currency', () => {
    expect(formatMoney('1234.50', 'USD', 'en-US')).toBe('$1,234.50');
    expect(formatMoney('0.05', 'USD', 'en-US')).toBe('$0.05');
  });

  it('keeps a negative ledger entry negative', () => {
    expect(formatMoney('-0.50', 'USD', 'en-US')).toBe('-$0.50');
  });

  it('uses the locale’s separators', () => {
    expect(formatMoney('1234567.89', 'EUR', 'de-DE')).toBe('1.234.567,89\u00a0€');
  });

  it('keeps every cent of an amount larger than a float holds exactly', () => {
    expect(formatMoney('98765432109876.43', 'USD', 'en-US')).toBe('$98,765,432,109,876.43');
  });
});
