// Typed clients of the five services, all through the gateway (same origin), all sharing the
// session and apiFetch. Types come from the services' OpenAPI documents (npm run types).

import createClient from 'openapi-fetch';
import type { paths as EmailPaths } from './email';
import { createApiFetch } from './http';
import type { paths as InvoicePaths } from './invoice';
import type { paths as PaymentPaths } from './payment';
import { ApiError, type Problem, readProblem } from './problem';
import { Session } from './session';
import type { paths as SyncPaths } from './sync';
import type { paths as UserPaths } from './user';

export const session = new Session();

let signInNeeded: () => void = () => {};
/** The app registers how to send the user to sign-in (its router knows the current place). */
export function setSignInHandler(handler: () => void): void {
  signInNeeded = handler;
}

export const apiFetch = createApiFetch({ session, onSignInNeeded: () => signInNeeded() });

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
export async function fetchFile(path: string): Promise<Blob> {
  const response = await apiFetch(new Request(new URL(path, window.location.origin)));
  if (!response.ok) {
    throw new ApiError(response.status, await readProblem(response));
  }
  return response.blob();
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
