import { useState } from 'react';
import { unwrap, userApi } from '../api/client';
import { Dialog } from './Dialog';
import { ErrorAlert } from './ErrorAlert';

/**
 * Confirms signing out in every browser and on every device. Until the user service has
 * answered, this browser stays signed in: a failure is shown, never taken for success.
 */
export default function SignOutEverywhereDialog({ onClose, onDone }: { onClose: () => void; onDone: () => void }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);

  async function confirm() {
    setBusy(true);
    setError(null);
    try {
      await unwrap(userApi.POST('/api/auth/logout-all'));
    } catch (caught) {
      setError(caught);
      setBusy(false);
      return;
    }
    onDone();
  }

  return (
    <Dialog title="Sign out everywhere?" onClose={onClose}>
      <ErrorAlert error={error} prefix="You are still signed in." />
      <p>
        This signs you out in every browser and on every device, this one included. A device that is open right now
        keeps working for up to 15 minutes, then asks to sign in again.
      </p>
      <div className="button-row">
        <button type="button" className="button-primary" onClick={confirm} disabled={busy}>
          {busy ? 'Signing out…' : 'Sign out everywhere'}
        </button>
        <button type="button" className="button-secondary" onClick={onClose}>
          Cancel
        </button>
      </div>
    </Dialog>
  );
}
