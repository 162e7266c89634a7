// What the services answer when something goes wrong (RFC 9457 problem+json, docs/api.md),
// and the sentences a person reads instead.

export interface FieldProblem {
  field: string;
  in?: string;
  message: string;
}

export interface Problem {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  errors?: FieldProblem[];
  [extension: string]: unknown;
}

/** An answer of 4xx or 5xx; `problem` is its body when it was problem+json. */
export class ApiError extends Error {
  readonly status: number;
  readonly problem: Problem | null;

  constructor(status: number, problem: Problem | null) {
    super(problem?.title ?? `HTTP ${status}`);
    this.name = 'ApiError';
    this.status = status;
    this.problem = problem;
  }
}

/** The request never got an answer: the network is down or the gateway is unreachable. */
export class OfflineError extends Error {
  constructor() {
    super('offline');
    this.name = 'OfflineError';
  }
}

export const OFFLINE_MESSAGE =
  'You appear to be offline. What is on screen stays as it was; try again when the connection is back.';

const STATUS_MESSAGES: Record<number, string> = {
  401: 'Your session has ended. Sign in again to continue.',
  403: 'You are not allowed to do this.',
  404: 'This could not be found. It may have been removed, or it belongs to another account.',
  409: 'This conflicts with the current state. Reload and try again.',
  413: 'What you sent is too large.',
  422: 'Some of what you entered is not valid.',
  429: 'Too many requests at once. Wait a moment and try again.',
  502: 'The service is not answering right now. Try again in a moment.',
  503: 'The service is busy or unavailable right now. Try again in a moment.',
  504: 'The service took too long to answer. Try again in a moment.',
};

function sentence(text: string): string {
  const trimmed = text.trim();
  if (!trimmed) return trimmed;
  const first = trimmed[0]!.toUpperCase() + trimmed.slice(1);
  return /[.!?]$/.test(first) ? first : `${first}.`;
}

/** One or two sentences from a problem: its title, then its detail when that says more. */
export function problemMessage(problem: Problem, status: number): string {
  const title = problem.title?.trim() ?? '';
  const detail = problem.detail?.trim() ?? '';
  if (title && detail) {
    if (detail.toLowerCase().startsWith(title.toLowerCase())) return sentence(detail);
    return `${sentence(title)} ${sentence(detail)}`;
  }
  if (detail || title) return sentence(detail || title);
  return STATUS_MESSAGES[status] ?? `The request failed (HTTP ${status}).`;
}

/** The message shown for any error a request or a screen can raise. */
export function errorMessage(error: unknown): string {
  if (error instanceof OfflineError) return OFFLINE_MESSAGE;
  if (error instanceof ApiError) {
    if (error.problem) return problemMessage(error.problem, error.status);
    if (error.status >= 500 && !(error.status in STATUS_MESSAGES)) {
      return 'Something went wrong on our side. Try again in a moment.';
    }
    return STATUS_MESSAGES[error.status] ?? `The request failed (HTTP ${error.status}).`;
  }
  return 'Something went wrong. Try again, and reload the page if it keeps happening.';
}

/** A field's message as shown under it: "must be MM-YYYY" becomes "Must be MM-YYYY." */
export function fieldMessage(message: string): string {
  return sentence(message.replace(/^Value error, /, ''));
}

/**
 * The problem's field errors keyed by field path as the API names it ("lines.0.unit_price",
 * "card.number"). `prefix` strips a wrapper the form does not show (a body nested under
 * "card" when the form is the card). Errors on the body as a whole, or on fields the form
 * has no input for, are left for the form's summary.
 */
export function fieldErrors(error: unknown, prefix = ''): Record<string, string> {
  if (!(error instanceof ApiError) || !error.problem?.errors) return {};
  const result: Record<string, string> = {};
  for (const item of error.problem.errors) {
    if (item.in && item.in !== 'body' && item.in !== 'header') continue;
    let field = item.field;
    if (prefix) {
      if (!field.startsWith(`${prefix}.`)) continue;
      field = field.slice(prefix.length + 1);
    }
    result[field] ??= fieldMessage(item.message);
  }
  return result;
}

/** Reads a failed answer's body as a problem when it is one. */
export async function readProblem(response: Response): Promise<Problem | null> {
  const type = response.headers.get('content-type') ?? '';
  if (!type.includes('json')) return null;
  try {
    const body: unknown = await response.clone().json();
    return body && typeof body === 'object' ? (body as Problem) : null;
  } catch {
    return null;
  }
}
