// How amounts and dates are written on screen.

const ISO_DATE = /^(\d{4})-(\d{2})-(\d{2})$/;

/** A calendar date ("2026-12-31") as a local Date at midnight of that same day. */
export function parseCalendarDate(isoDate: string): Date | null {
  const match = ISO_DATE.exec(isoDate);
  if (!match) return null;
  const [, year, month, day] = match;
  const date = new Date(Number(year), Number(month) - 1, Number(day));
  return date.getDate() === Number(day) ? date : null;
}

/** A calendar date (an invoice's due date) as the reader's locale writes it. It is read as
 * the date itself, never as midnight UTC, so no time zone can move it to another day. */
export function formatDate(isoDate: string, locale?: string): string {
  const date = parseCalendarDate(isoDate);
  if (!date) return isoDate;
  return new Intl.DateTimeFormat(locale, { day: 'numeric', month: 'short', year: 'numeric' }).format(date);
}

/** A moment (RFC 3339 with offset) in the reader's own time zone. */
export function formatDateTime(moment: string, locale?: string, timeZone?: string): string {
  const date = new Date(moment);
  if (Number.isNaN(date.getTime())) return moment;
  return new Intl.DateTimeFormat(locale, {
    day: 'numeric',
    month: 'short',
    year: 'numeric',
    hour: '2-digit',
    minute: '2-digit',
    timeZone,
  }).format(date);
}

/**
 * An amount the API wrote as a decimal string ("1234.50", "-0.50") with its currency. The
 * string is never turned into a float: digits are grouped as text, so cents stay exact.
 */
export function formatMoney(amount: string, currency: string, locale?: string): string {
  const match = /^(-?)(\d+)(?:\.(\d+))?$/.exec(amount.trim());
  if (!match) return `${amount} ${currency}`;
  const [, sign, whole, fraction = ''] = match;
  const parts = new Intl.NumberFormat(locale, { style: 'currency', currency }).formatToParts(
    sign ? -1111.11 : 1111.11,
  );
  const group = parts.find((part) => part.type === 'group')?.value ?? ',';
  const decimal = parts.find((part) => part.type === 'decimal')?.value ?? '.';
  const grouped = whole!.replace(/^0+(?=\d)/, '').replace(/\B(?=(\d{3})+(?!\d))/g, group);
  const cents = fraction.padEnd(2, '0');
  let number = '';
  return parts
    .map((part) => {
      if (part.type === 'integer') {
        if (number) return '';
        number = grouped;
        return grouped;
      }
      if (part.type === 'group') return '';
      if (part.type === 'decimal') return decimal;
      if (part.type === 'fraction') return cents;
      return part.value;
    })
    .join('');
}

/** Today as YYYY-MM-DD in the reader's own calendar (for date inputs' defaults). */
export function todayIso(now = new Date()): string {
  const month = String(now.getMonth() + 1).padStart(2, '0');
  const day = String(now.getDate()).padStart(2, '0');
  return `${now.getFullYear()}-${month}-${day}`;
}

/** Adds whole days to a calendar date, on the calendar (no time zone involved). */
export function addDays(isoDate: string, days: number): string {
  const date = parseCalendarDate(isoDate);
  if (!date) return isoDate;
  date.setDate(date.getDate() + days);
  return todayIso(date);
}
