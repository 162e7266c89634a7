import { renderHook } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { useIdempotentSubmit } from './idempotency';

describe('useIdempotentSubmit', () => {
  it('reuses the key for the same content, ignores a submit while one is in flight, and starts over after reset', async () => {
    const { result } = renderHook(() => useIdempotentSubmit<string>());
    const keys: string[] = [];
    let finish: () => void = () => {};
    const slow = (key: string) => {
      keys.push(key);
      return new Promise<string>((resolve) => (finish = () => resolve(key)));
    };

    const first = result.current.submit({ amount: '5.00' }, slow);
    expect(await result.current.submit({ amount: '5.00' }, slow)).toBeUndefined();
    finish();
    await first;
    await result.current.submit({ amount: '5.00' }, async (key) => (keys.push(key), key));
    await result.current.submit({ amount: '6.00' }, async (key) => (keys.push(key), key));
    result.current.reset();
    await result.current.submit({ amount: '6.00' }, async (key) => (keys.push(key), key));

    expect(keys).toHaveLength(4);
    expect(keys[1]).toBe(keys[0]);
    expect(keys[2]).not.toBe(keys[1]);
    expect(keys[3]).not.toBe(keys[2]);
  });
});
