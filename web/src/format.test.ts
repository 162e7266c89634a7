import { describe, expect, it } from 'vitest';
import { formatDate } from './format';

describe('formatDate', () => {
  it('shows a due date as the same calendar day', () => {
    expect(formatDate('2026-12-31', 'en-GB')).toBe('31 Dec 2026');
  });
});
