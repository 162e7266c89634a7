// The API's own input rules (the services' schemas.py), checked before a request is sent so
// a mistake shows at once. The API still decides: its field errors are shown the same way.

export const MONEY = /^([1-9][0-9]{0,9}(\.[0-9]{1,2})?|0\.([1-9][0-9]?|0[1-9]))$/;
export const QUANTITY = /^[0-9]{1,7}(\.[0-9]{1,3})?$/;
export const CURRENCY = /^[A-Z]{3}$/;
export const ISO_DATE = /^\d{4}-\d{2}-\d{2}$/;
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
const CARD_NUMBER = /^[0-9 ]+$/;
const CARD_EXPIRY = /^(0[1-9]|1[0-2])-([0-9]{4})$/;

export type Check = (value: string) => string | null;

export const required =
  (max: number, what = 'this'): Check =>
  (value) => {
    const text = value.trim();
    if (!text) return `Enter ${what}.`;
    if (text.length > max) return `Use at most ${max} characters.`;
    return null;
  };

export const email: Check = (value) =>
  EMAIL.test(value.trim()) ? null : 'Enter an email address such as name@example.com.';

export const money: Check = (value) =>
  MONEY.test(value.trim()) ? null : 'Enter a positive amount with at most two decimals, such as 12.50.';

export const quantity: Check = (value) => {
  const text = value.trim();
  if (!QUANTITY.test(text)) return 'Enter a number below 10000000 with at most three decimals.';
  return Number(text) > 0 ? null : 'Enter a quantity greater than 0.';
};

export const currency: Check = (value) =>
  !value || CURRENCY.test(value) ? null : 'Use a three-letter currency code such as USD.';

export const isoDate: Check = (value) =>
  !value || ISO_DATE.test(value) ? null : 'Enter a date as YYYY-MM-DD.';

export const cardNumber: Check = (value) => {
  if (!CARD_NUMBER.test(value)) return 'Enter the card number: digits, spaces allowed.';
  const digits = value.replace(/ /g, '').length;
  return digits >= 12 && digits <= 19 ? null : 'A card number has 12 to 19 digits.';
};

export const cardExpiry =
  (today = new Date()): Check =>
  (value) => {
    const match = CARD_EXPIRY.exec(value.trim());
    if (!match) return 'Enter the expiry as MM-YYYY, such as 01-2030.';
    const [year, month] = [Number(match[2]), Number(match[1])];
    if (year < today.getFullYear() || (year === today.getFullYear() && month < today.getMonth() + 1)) {
      return 'This card has expired.';
    }
    return null;
  };

export const cvv: Check = (value) => (!value || /^[0-9]{3,4}$/.test(value) ? null : 'The security code has 3 or 4 digits.');

/** Runs each field's checks; the first failing message per field. */
export function validate<T extends Record<string, string>>(
  values: T,
  checks: Partial<Record<keyof T, Check[]>>,
): Partial<Record<keyof T, string>> {
  const errors: Partial<Record<keyof T, string>> = {};
  for (const key of Object.keys(checks) as (keyof T)[]) {
    for (const check of checks[key] ?? []) {
      const message = check(values[key] ?? '');
      if (message) {
        errors[key] = message;
        break;
      }
    }
  }
  return errors;
}
