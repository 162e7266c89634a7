// Typed clients of the five services, all through the gateway (same origin), all sharing the
// session and apiFetch. Types come from the services' OpenAPI documents (npm run types).

import createClient from 'openapi-fetch';
import type { paths as EmailPaths } from './email';
import { createApiFetch, retryAfterSeconds } from './http';
import type { paths as InvoicePaths } from './invoice';
import type { paths as PaymentPaths } from './payment';
import { ApiError, type Problem, readProblem } from './problem';
import { Session } from './session';
import type { paths as SyncPaths } from './sync';
import type { paths as UserPaths } from './user';

export const session = new Session();

// A file still being prepared (503 with Retry-After) is asked for again at most this often.
const FILE_RETRIES = 3;

// When the sign-in is over, the session turns signed-out and the app's frame (Layout) sends
// the user to sign-in with the current address: nothing more to do per request.
export const apiFetch = createApiFetch({ session });

const options = { baseUrl: window.location.origin, fetch: apiFetch };
export const userApi = createClient<UserPaths>(options);
export const invoiceApi = createClient<InvoicePaths>(options);
export const paymentApi = createClient<PaymentPaths>(options);
export const syncApi = createClient<SyncPaths>(options);
export const emailApi = createClient<EmailPaths>(options);

/** The data of a successful answer; an ApiError carrying the problem otherwise. */
export async function unwrap<T>(
  call: Promise<{ data?: T; error?: unknown; response: Response }>,
): Promise<T> {
  const { data, error, response } = await call;
  if (!response.ok) {
    const problem = error && typeof error === 'object' ? (error as Problem) : null;
    throw new ApiError(response.status, problem);
  }
  return data as T;
}

/** A file from the API (a PDF, a CSV) as a Blob, through the same authenticated fetch. */
export async function fetchFile(path: string, sleep = (ms: number) => new Promise((done) => setTimeout(done, ms))): Promise<Blob> {
  for (let attempt = 0; ; attempt += 1) {
    const response = await apiFetch(new Request(new URL(path, window.location.origin)));
    if (response.ok) return response.blob();
    // A PDF being rendered by another request answers 503 with Retry-After: it is ready soon.
    if (response.status === 503 && response.headers.has('Retry-After') && attempt < FILE_RETRIES) {
      await sleep(retryAfterSeconds(response.headers.get('Retry-After')) * 1000);
      continue;
    }
    throw new ApiError(response.status, await readProblem(response));
  }
}

/** Saves a Blob under a file name, as a download link the browser follows. */
export function saveFile(blob: Blob, filename: string): void {
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
