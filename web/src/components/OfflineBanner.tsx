import { onlineManager } from '@tanstack/react-query';
import { useSyncExternalStore } from 'react';

/** Says the browser is offline; what is on screen stays, and queries resume when back. */
export function OfflineBanner() {
  const online = useSyncExternalStore(
    (listener) => onlineManager.subscribe(listener),
    () => onlineManager.isOnline(),
  );
  if (online) return null;
  return (
    <div className="offline-banner" role="status">
      You are offline. What is shown may be out of date, and changes wait until the connection is
      back.
    </div>
  );
}
