// The one fetch every API call goes through: it adds the access token, refreshes it once on a
// 401, waits out a 429 and turns a lost connection into OfflineError.

import { OfflineError } from './problem';
import type { Session } from './session';

export const MAX_RATE_LIMIT_WAITS = 2;
const LONGEST_WAIT_SECONDS = 30;

export type Sleep = (ms: number) => Promise<void>;
const realSleep: Sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Seconds from a Retry-After header (delta seconds or an HTTP date); 1 when absent. */
export function retryAfterSeconds(value: string | null, now = Date.now()): number {
  if (!value) return 1;
  const seconds = Number(value);
  const wait = Number.isFinite(seconds) ? seconds : (Date.parse(value) - now) / 1000;
  if (!Number.isFinite(wait)) return 1;
  return Math.min(LONGEST_WAIT_SECONDS, Math.max(0, wait));
}

export interface ApiFetchOptions {
  session: Session;
  /** Called when the sign-in is over (the session has ended by then). */
  onSignInNeeded?: () => void;
  sleep?: Sleep;
}

export function createApiFetch({
  session,
  onSignInNeeded = () => {},
  sleep = realSleep,
}: ApiFetchOptions): (input: Request) => Promise<Response> {
  return async (original: Request) => {
    let refreshed = false;
    let waits = 0;
    for (;;) {
      const request = original.clone();
      const token = session.accessToken();
      if (token) request.headers.set('Authorization', `Bearer ${token}`);
      let response: Response;
      try {
        response = await fetch(request);
      } catch (error) {
        if (error instanceof DOMException && error.name === 'AbortError') throw error;
        throw new OfflineError();
      }
      if (response.status === 401) {
        // An access token can expire between the renewal and the request: one refresh, one
        // retry. A second 401 means the sign-in itself is over.
        if (!refreshed) {
          refreshed = true;
          if (await session.refresh()) continue;
        } else {
          session.end();
        }
        onSignInNeeded();
        return response;
      }
      if (response.status === 429 && waits < MAX_RATE_LIMIT_WAITS) {
        waits += 1;
        await sleep(retryAfterSeconds(response.headers.get('Retry-After')) * 1000);
        continue;
      }
      return response;
    }
  };
}
