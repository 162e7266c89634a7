import { describe, expect, it } from 'vitest';
import { ApiError, errorMessage, fieldErrors, OFFLINE_MESSAGE, OfflineError, readProblem } from './problem';

describe('errorMessage', () => {
  it('reads a problem as its title and detail', () => {
    const error = new ApiError(402, { title: 'Payment declined', status: 402, detail: 'the card was declined (insufficient funds); nothing was charged' });
    expect(errorMessage(error)).toBe('Payment declined. The card was declined (insufficient funds); nothing was charged.');
  });

  it('does not repeat a title the detail already starts with', () => {
    const error = new ApiError(409, { title: 'Invoice is void', detail: 'Invoice is void and cannot be paid.' });
    expect(errorMessage(error)).toBe('Invoice is void and cannot be paid.');
  });

  it('says something useful when the answer was not a problem (a gateway error page)', () => {
    expect(errorMessage(new ApiError(502, null))).toBe('The service is not answering right now. Try again in a moment.');
    expect(errorMessage(new ApiError(500, null))).toBe('Something went wrong on our side. Try again in a moment.');
  });

  it('says when the network is gone', () => {
    expect(errorMessage(new OfflineError())).toBe(OFFLINE_MESSAGE);
  });
});

describe('fieldErrors', () => {
  const invalid = new ApiError(422, {
    title: 'Invalid input',
    status: 422,
    detail: 'Invalid value for: card.expiry, lines.0.unit_price',
    errors: [
      { field: 'lines.0.unit_price', in: 'body', message: 'must be a positive decimal string with at most 2 decimals, e.g. "12.50"' },
      { field: 'card.expiry', in: 'body', message: 'Value error, the card has expired' },
      { field: 'limit', in: 'query', message: 'must be at most 100' },
    ],
  });

  it('keys each body field error by the API’s field path, as a sentence', () => {
    expect(fieldErrors(invalid)).toEqual({
      'lines.0.unit_price': 'Must be a positive decimal string with at most 2 decimals, e.g. "12.50".',
      'card.expiry': 'The card has expired.',
    });
  });

  it('strips a wrapper the form does not show', () => {
    expect(fieldErrors(invalid, 'card')).toEqual({ expiry: 'The card has expired.' });
  });

  it('has nothing for an error that is not a problem', () => {
    expect(fieldErrors(new Error('x'))).toEqual({});
  });
});

describe('readProblem', () => {
  it('reads problem+json and ignores other bodies', async () => {
    const problem = new Response('{"title":"Not found","status":404}', { status: 404, headers: { 'content-type': 'application/problem+json' } });
    expect(await readProblem(problem)).toEqual({ title: 'Not found', status: 404 });
    expect(await readProblem(new Response('<html>', { status: 502, headers: { 'content-type': 'text/html' } }))).toBeNull();
  });
});
