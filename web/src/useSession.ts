import { useSyncExternalStore } from 'react';
import { session } from './api/client';
import type { SessionState } from './api/session';

export function useSession(): SessionState {
  return useSyncExternalStore(session.subscribe, session.getState);
}
