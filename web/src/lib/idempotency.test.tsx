import { act, renderHook } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { ApiError, OfflineError } from '../api/problem';
import { useIdempotentSubmit } from './idempotency';

function setup() {
  const { result } = renderHook(() => useIdempotentSubmit());
  const keys: string[] = [];
  const send = (content: unknown, outcome: () => unknown) =>
    act(() =>
      result.current
        .submit(content, async (key) => {
          keys.push(key);
          return outcome();
        })
        .catch(() => undefined),
    );
  return { result, keys, send };
}

const fail = (error: Error) => () => {
  throw error;
};

describe('useIdempotentSubmit', () => {
  it('ignores a second submit while the first is in flight', async () => {
    const { result } = renderHook(() => useIdempotentSubmit());
    let finish: () => void = () => {};
    let sends = 0;
    const slow = () => {
      sends += 1;
      return new Promise<string>((resolve) => (finish = () => resolve('done')));
    };
    let first: Promise<string | undefined> = Promise.resolve(undefined);
    act(() => {
      first = result.current.submit({ amount: '5.00' }, slow);
    });
    expect(result.current.busy).toBe(true);
    expect(await result.current.submit({ amount: '5.00' }, slow)).toBeUndefined();
    await act(async () => finish());
    expect(await first).toBe('done');
    expect(sends).toBe(1);
    expect(result.current.busy).toBe(false);
  });

  it('sends the same key again while the outcome is unknown', async () => {
    const { keys, send } = setup();
    await send({ amount: '5.00' }, fail(new OfflineError()));
    await send({ amount: '5.00' }, fail(new ApiError(503, null)));
    await send({ amount: '5.00' }, fail(new ApiError(409, { title: 'A request with this key is running' })));
    await send({ amount: '5.00' }, () => 'ok');
    expect(new Set(keys).size).toBe(1);
  });

  it('takes a new key once the outcome is known: after a refusal, a success, or new content', async () => {
    const { keys, send } = setup();
    await send({ amount: '5.00' }, fail(new ApiError(402, { title: 'Card declined' })));
    await send({ amount: '5.00' }, () => 'paid');
    await send({ amount: '5.00' }, () => 'a second top-up of the same amount');
    await send({ amount: '6.00' }, fail(new OfflineError()));
    await send({ amount: '7.00' }, () => 'ok');
    expect(new Set(keys).size).toBe(5);
  });
});
