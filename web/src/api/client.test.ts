import { describe, expect, it, vi } from 'vitest';
import { json, mockApi } from '../test/api';
import { fetchFile, unwrap, userApi } from './client';
import { ApiError } from './problem';

describe('typed client', () => {
  it('answers the data of a success and an ApiError with the problem otherwise', async () => {
    mockApi({
      'GET /api/users/me': [() => json({ id: 'u1', email: 'a@example.com' }), () => json({ title: 'Not found', status: 404, detail: 'No such user' }, 404)],
    });
    expect(await unwrap(userApi.GET('/api/users/me'))).toMatchObject({ id: 'u1' });
    const error = await unwrap(userApi.GET('/api/users/me')).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError).problem?.detail).toBe('No such user');
  });

  it('waits for a PDF still being rendered elsewhere, then downloads it', async () => {
    const api = mockApi({
      'GET /api/invoices/i1/pdf': [
        () => json({ title: 'Service unavailable', status: 503 }, 503, { 'Retry-After': '1' }),
        () => new Response('%PDF-1.7', { headers: { 'content-type': 'application/pdf' } }),
      ],
    });
    const sleep = vi.fn(async () => {});
    const blob = await fetchFile('/api/invoices/i1/pdf', sleep);
    expect(await blob.text()).toBe('%PDF-1.7');
    expect(sleep).toHaveBeenCalledWith(1000);
    expect(api.callsTo('GET /api/invoices/i1/pdf')).toHaveLength(2);
  });
});
