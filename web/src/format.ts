/** A calendar date (an invoice's due date, "2026-12-31") as the reader's locale writes it.
 * Parsed as the date itself, never as midnight UTC, so no time zone can move it a day. */
export function formatDate(isoDate: string, locale?: string): string {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(isoDate);
  if (!match) return isoDate;
  const [, year, month, day] = match;
  const date = new Date(Number(year), Number(month) - 1, Number(day));
  return new Intl.DateTimeFormat(locale, { dateStyle: 'medium' }).format(date);
}
