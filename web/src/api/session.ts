// The signed-in session. The refresh token lives in an HttpOnly cookie scoped to /api/auth,
// which this code never sees; the access token lives in this object only (never in storage,
// where any script on the page could read it), so a reload starts with a refresh.

import { ApiError, OfflineError, readProblem } from './problem';

export type SessionStatus = 'checking' | 'signed-in' | 'signed-out';

export interface SessionState {
  status: SessionStatus;
  userId: string | null;
  /** True when a signed-in session ended on its own (refused refresh), not by signing out. */
  expired: boolean;
}

interface TokenAnswer {
  access_token: string;
  expires_in: number;
  user_id: string;
}

/** Seconds before the access token's expiry at which it is renewed in the background. */
export const RENEW_BEFORE_EXPIRY_SECONDS = 60;
const RETRY_OFFLINE_RENEWAL_MS = 15_000;

export class Session {
  private token: string | null = null;
  private state: SessionState = { status: 'checking', userId: null, expired: false };
  private pending: Promise<boolean> | null = null;
  private renewal: ReturnType<typeof setTimeout> | null = null;
  private readonly listeners = new Set<() => void>();

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  getState = (): SessionState => this.state;

  accessToken(): string | null {
    return this.token;
  }

  /**
   * Trades the refresh cookie for a new access token. Concurrent callers share one request:
   * the cookie's token can be spent once, and several requests failing with 401 together
   * must not each spend it. Resolves false when the sign-in is over (401); throws
   * OfflineError when there is no network, ApiError on another failure.
   */
  refresh(): Promise<boolean> {
    this.pending ??= this.exchange().finally(() => {
      this.pending = null;
    });
    return this.pending;
  }

  private async exchange(): Promise<boolean> {
    let response: Response;
    try {
      response = await fetch('/api/auth/refresh', {
        method: 'POST',
        credentials: 'same-origin',
        headers: { Accept: 'application/json' },
      });
    } catch {
      throw new OfflineError();
    }
    if (response.status === 401) {
      this.end(this.state.status === 'signed-in');
      return false;
    }
    if (!response.ok) throw new ApiError(response.status, await readProblem(response));
    const answer = (await response.json()) as TokenAnswer;
    this.token = answer.access_token;
    this.schedule(Math.max(5, answer.expires_in - RENEW_BEFORE_EXPIRY_SECONDS) * 1000);
    this.set({ status: 'signed-in', userId: answer.user_id, expired: false });
    return true;
  }

  /** Renews the token shortly before it expires, so requests rarely meet a 401 at all. */
  private schedule(delayMs: number): void {
    if (this.renewal) clearTimeout(this.renewal);
    this.renewal = setTimeout(() => {
      this.refresh().catch(() => this.schedule(RETRY_OFFLINE_RENEWAL_MS));
    }, delayMs);
  }

  /** The sign-in is no longer valid (refused refresh, or a 401 after one). */
  end(expired = true): void {
    this.token = null;
    if (this.renewal) clearTimeout(this.renewal);
    this.renewal = null;
    this.set({ status: 'signed-out', userId: null, expired });
  }

  /** Revokes this browser's sign-in at the user service and forgets the access token. */
  async signOut(): Promise<void> {
    try {
      await fetch('/api/auth/logout', { method: 'POST', credentials: 'same-origin' });
    } finally {
      this.end(false);
    }
  }

  private set(next: SessionState): void {
    this.state = next;
    for (const listener of this.listeners) listener();
  }
}

/**
 * Where the sign-in button goes: the user service's browser flow, which comes back to
 * /signed-in with the refresh cookie set, and from there to `next`.
 */
export function signInUrl(provider: string, next: string, origin = window.location.origin): string {
  const back = `${origin}/signed-in?next=${encodeURIComponent(safeNext(next))}`;
  return `/api/auth/${encodeURIComponent(provider)}/login?redirect_uri=${encodeURIComponent(back)}`;
}

/** Only a path of this app is a place to return to: never another site. */
export function safeNext(next: string | null | undefined): string {
  if (!next || !next.startsWith('/') || next.startsWith('//') || next.startsWith('/\\')) {
    return '/invoices';
  }
  if (next.startsWith('/sign-in') || next.startsWith('/signed-in')) return '/invoices';
  return next;
}
