import { errorMessage } from '../api/problem';

/** An error as a sentence, announced when it appears. */
export function ErrorAlert({ error, prefix }: { error: unknown; prefix?: string }) {
  if (!error) return null;
  return (
    <div className="alert alert-error" role="alert">
      {prefix ? `${prefix} ` : ''}
      {errorMessage(error)}
    </div>
  );
}
