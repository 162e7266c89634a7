import { render, screen } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { useState } from 'react';
import { describe, expect, it } from 'vitest';
import { Dialog } from './Dialog';

function Page() {
  const [open, setOpen] = useState(false);
  return (
    <div>
      <button type="button" onClick={() => setOpen(true)}>
        Send by email
      </button>
      {open ? (
        <Dialog title="Send invoice" onClose={() => setOpen(false)}>
          <label>
            Recipient <input />
          </label>
          <button type="button">Send</button>
        </Dialog>
      ) : null}
    </div>
  );
}

describe('Dialog', () => {
  it('takes focus, keeps Tab inside, closes on Escape and gives focus back', async () => {
    const user = userEvent.setup();
    render(<Page />);
    const opener = screen.getByRole('button', { name: 'Send by email' });
    await user.click(opener);

    const dialog = screen.getByRole('dialog', { name: 'Send invoice' });
    expect(dialog).toHaveAttribute('aria-modal', 'true');
    const recipient = screen.getByRole('textbox', { name: 'Recipient' });
    expect(recipient).toHaveFocus();

    await user.tab();
    expect(screen.getByRole('button', { name: 'Send' })).toHaveFocus();
    await user.tab();
    expect(screen.getByRole('button', { name: 'Close' })).toHaveFocus();
    await user.tab();
    expect(recipient).toHaveFocus();
    await user.tab({ shift: true });
    expect(screen.getByRole('button', { name: 'Close' })).toHaveFocus();

    await user.keyboard('{Escape}');
    expect(screen.queryByRole('dialog')).not.toBeInTheDocument();
    expect(opener).toHaveFocus();
  });
});
