import { useQueryClient } from '@tanstack/react-query';
import { Suspense, useEffect, useRef, useState } from 'react';
import { Navigate, NavLink, Outlet, useLocation, useNavigate, useNavigationType } from 'react-router';
import { session } from './api/client';
import { Loading } from './components/Loading';
import { OfflineBanner } from './components/OfflineBanner';
import { useSession } from './useSession';

const NAV = [
  ['/invoices', 'Invoices'],
  ['/clients', 'Clients'],
  ['/wallet', 'Wallet'],
  ['/emails', 'Emails'],
  ['/imports', 'Imports'],
  ['/billing-runs', 'Billing runs'],
  ['/profile', 'Profile'],
] as const;

/** The signed-in frame: skip link, header with navigation, the screen, offline banner. */
export function Layout() {
  const state = useSession();
  const location = useLocation();
  const navigate = useNavigate();
  const queryClient = useQueryClient();
  const [menuOpen, setMenuOpen] = useState(false);
  const here = `${location.pathname}${location.search}`;
  const main = useRef<HTMLElement>(null);
  const firstRender = useRef(true);

  const navigationType = useNavigationType();
  useEffect(() => {
    setMenuOpen(false);
    // After the user moves to another screen, focus goes to it, so a screen reader starts
    // there and Tab continues from there. Not on the first load or a redirect (the skip
    // link comes first then, as on any page load).
    if (firstRender.current) {
      firstRender.current = false;
      return;
    }
    if (navigationType !== 'REPLACE') main.current?.focus();
  }, [location.pathname, navigationType]);

  if (state.status === 'checking') {
    return (
      <main id="main" className="centered">
        <Loading what="Signing you in" />
      </main>
    );
  }
  if (state.status === 'signed-out') {
    const reason = state.expired ? '&expired=1' : '';
    return <Navigate to={`/sign-in?next=${encodeURIComponent(here)}${reason}`} replace />;
  }

  async function signOut() {
    await session.signOut().catch(() => undefined);
    queryClient.clear();
    navigate('/sign-in', { replace: true });
  }

  return (
    <>
      <a className="skip-link" href="#main">
        Skip to main content
      </a>
      <header className="site-header">
        <div className="header-bar">
          <NavLink to="/invoices" className="brand">
            Ledgerline
          </NavLink>
          <button
            type="button"
            className="menu-button"
            aria-expanded={menuOpen}
            aria-controls="site-nav"
            onClick={() => setMenuOpen((open) => !open)}
          >
            Menu
          </button>
        </div>
        <nav id="site-nav" aria-label="Main" className={menuOpen ? 'open' : undefined}>
          <ul>
            {NAV.map(([to, label]) => (
              <li key={to}>
                <NavLink to={to}>{label}</NavLink>
              </li>
            ))}
            <li>
              <button type="button" className="nav-button" onClick={signOut}>
                Sign out
              </button>
            </li>
          </ul>
        </nav>
      </header>
      <OfflineBanner />
      <main id="main" ref={main} tabIndex={-1}>
        <Suspense fallback={<Loading />}>
          <Outlet />
        </Suspense>
      </main>
    </>
  );
}
