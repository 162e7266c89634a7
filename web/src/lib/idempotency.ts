// An Idempotency-Key per operation (docs/idempotency.md). A submission whose outcome is
// unknown (no answer, a 5xx, or 409 "the same key is still running") is sent again with the
// same key, so the service runs it at most once however often it arrives. Once the outcome is
// known (a success, or a refusal such as a declined card or a wallet too low) the key is
// spent: the service would replay that same answer to it, and the next submission is a new
// operation. Changed content always gets a new key (the service refuses an old key with
// another body). While one submission is in flight, another is ignored: a double click sends
// one request.

import { useCallback, useRef, useState } from 'react';
import { ApiError } from '../api/problem';

export function newIdempotencyKey(): string {
  return crypto.randomUUID();
}

/** Whether a failed submission may have been carried out: only then is its key kept. */
export function outcomeUnknown(error: unknown): boolean {
  if (error instanceof ApiError) return error.status >= 500 || error.status === 409;
  return true;
}

export interface IdempotentSubmit {
  /** Runs `send` with this content's key; resolves undefined when ignored (one in flight). */
  submit: <T>(content: unknown, send: (key: string) => Promise<T>) => Promise<T | undefined>;
  busy: boolean;
}

export function useIdempotentSubmit(): IdempotentSubmit {
  const last = useRef<{ content: string; key: string } | null>(null);
  const inFlight = useRef(false);
  const [busy, setBusy] = useState(false);

  const submit = useCallback(async <T,>(content: unknown, send: (key: string) => Promise<T>): Promise<T | undefined> => {
    if (inFlight.current) return undefined;
    const text = JSON.stringify(content);
    if (last.current?.content !== text) last.current = { content: text, key: newIdempotencyKey() };
    inFlight.current = true;
    setBusy(true);
    try {
      const result = await send(last.current.key);
      last.current = null;
      return result;
    } catch (error) {
      if (!outcomeUnknown(error)) last.current = null;
      throw error;
    } finally {
      inFlight.current = false;
      setBusy(false);
    }
  }, []);

  return { submit, busy };
}
