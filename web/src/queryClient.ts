import { QueryClient } from '@tanstack/react-query';
import { ApiError, OfflineError } from './api/problem';

/** A refused request (4xx) is not retried; a lost connection or a 5xx is, twice. */
function shouldRetry(failures: number, error: unknown): boolean {
  if (error instanceof ApiError && error.status < 500) return false;
  return failures < 2 && (error instanceof OfflineError || error instanceof ApiError);
}

export function createQueryClient(): QueryClient {
  return new QueryClient({
    defaultOptions: {
      queries: {
        retry: shouldRetry,
        staleTime: 10_000,
        // Data already shown stays on screen while offline or while a refetch fails.
        networkMode: 'online',
      },
      mutations: { retry: false, networkMode: 'always' },
    },
  });
}
