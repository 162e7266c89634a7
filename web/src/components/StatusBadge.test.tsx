import { render, screen } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { StatusBadge } from './StatusBadge';

describe('StatusBadge', () => {
  it('says the status in words, so colour is never the only sign', () => {
    render(
      <>
        <StatusBadge status="past_due" />
        <StatusBadge status="bounced" />
        <StatusBadge status="some_new_state" />
      </>,
    );
    expect(screen.getByText('Past due')).toHaveClass('badge-warn');
    expect(screen.getByText('Bounced')).toHaveClass('badge-bad');
    expect(screen.getByText('some new state')).toHaveClass('badge-neutral');
  });
});
