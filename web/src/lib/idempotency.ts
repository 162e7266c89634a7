// An Idempotency-Key per operation (docs/idempotency.md): the same form sent again with the
// same content carries the same key, so the service runs it once however many times it
// arrives (a double click, a retry after a lost answer). Changed content is a new operation
// and gets a new key: the service would refuse an old key with another body.

import { useCallback, useRef } from 'react';

export function newIdempotencyKey(): string {
  return crypto.randomUUID();
}

export interface IdempotentSubmit<T> {
  /** Runs `send` with this content's key; while one send is in flight, another is ignored. */
  submit: (content: unknown, send: (key: string) => Promise<T>) => Promise<T | undefined>;
  /** Forgets the key after a success, so the next submission is a new operation. */
  reset: () => void;
}

export function useIdempotentSubmit<T>(): IdempotentSubmit<T> {
  const last = useRef<{ content: string; key: string } | null>(null);
  const inFlight = useRef(false);

  const submit = useCallback(async (content: unknown, send: (key: string) => Promise<T>) => {
    if (inFlight.current) return undefined;
    const text = JSON.stringify(content);
    if (last.current?.content !== text) last.current = { content: text, key: newIdempotencyKey() };
    inFlight.current = true;
    try {
      return await send(last.current.key);
    } finally {
      inFlight.current = false;
    }
  }, []);

  const reset = useCallback(() => {
    last.current = null;
  }, []);

  return { submit, reset };
}
