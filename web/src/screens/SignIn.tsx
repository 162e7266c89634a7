import { useQuery } from '@tanstack/react-query';
import { Navigate, useSearchParams } from 'react-router';
import { unwrap, userApi } from '../api/client';
import { safeNext, signInUrl } from '../api/session';
import { ErrorAlert } from '../components/ErrorAlert';
import { Loading } from '../components/Loading';
import { PageTitle } from '../components/PageTitle';
import { useSession } from '../useSession';

const PROVIDER_NAMES: Record<string, string> = { mock: 'the test provider', google: 'Google', github: 'GitHub' };

const SIGN_IN_ERRORS: Record<string, string> = {
  access_denied: 'The sign-in was cancelled at the provider.',
};

export function Component() {
  const [params] = useSearchParams();
  const next = safeNext(params.get('next'));
  const state = useSession();
  const providers = useQuery({
    queryKey: ['auth-providers'],
    queryFn: () => unwrap(userApi.GET('/api/auth/providers')),
    staleTime: Infinity,
  });

  if (state.status === 'signed-in') return <Navigate to={next} replace />;
  const error = params.get('error');

  return (
    <main id="main" className="sign-in">
      <div className="sign-in-panel">
        <p className="brand brand-large">Ledgerline</p>
        <PageTitle title="Sign in">Sign in</PageTitle>
        <p>Invoices, payments and your wallet in one place.</p>
        {params.get('expired') ? (
          <div className="alert alert-info" role="status">
            Your session has ended. Sign in again to go back where you were.
          </div>
        ) : null}
        {error ? (
          <div className="alert alert-error" role="alert">
            {SIGN_IN_ERRORS[error] ?? 'The sign-in did not complete. Please try again.'}
          </div>
        ) : null}
        {providers.isPending ? <Loading what="Loading sign-in options" /> : null}
        <ErrorAlert error={providers.error} />
        <ul className="provider-list">
          {providers.data?.providers.map((provider) => (
            <li key={provider}>
              <a className="button button-primary button-block" href={signInUrl(provider, next)}>
                Sign in with {PROVIDER_NAMES[provider] ?? provider}
              </a>
            </li>
          ))}
        </ul>
        <p className="muted">New here? Signing in for the first time creates your account.</p>
      </div>
    </main>
  );
}
