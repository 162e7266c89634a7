import { useEffect, useState } from 'react';
import { Link, useNavigate, useSearchParams } from 'react-router';
import { session } from '../api/client';
import { safeNext } from '../api/session';
import { ErrorAlert } from '../components/ErrorAlert';
import { Loading } from '../components/Loading';

/** Where the sign-in flow comes back to: the cookie is set; trade it for an access token. */
export function Component() {
  const [params] = useSearchParams();
  const navigate = useNavigate();
  const [error, setError] = useState<unknown>(null);
  const next = safeNext(params.get('next'));
  const failed = params.get('error');

  useEffect(() => {
    if (failed) {
      navigate(`/sign-in?error=${encodeURIComponent(failed)}&next=${encodeURIComponent(next)}`, { replace: true });
      return;
    }
    session
      .refresh()
      .then((ok) => {
        if (ok) navigate(next, { replace: true });
        else navigate(`/sign-in?error=sign_in_failed&next=${encodeURIComponent(next)}`, { replace: true });
      })
      .catch(setError);
  }, [failed, navigate, next]);

  return (
    <main id="main" className="centered">
      {error ? (
        <div>
          <ErrorAlert error={error} />
          <Link to={`/sign-in?next=${encodeURIComponent(next)}`}>Back to sign-in</Link>
        </div>
      ) : (
        <Loading what="Signing you in" />
      )}
    </main>
  );
}
