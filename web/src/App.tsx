import { QueryClientProvider, type QueryClient } from '@tanstack/react-query';
import { lazy, type ReactNode, Suspense } from 'react';
import { BrowserRouter, Navigate, Route, Routes } from 'react-router';
import { Loading } from './components/Loading';
import { Layout } from './Layout';
import { NotFound } from './screens/NotFound';

// Each screen is its own chunk, fetched when its route is first visited. The declarative
// router (not the data router) keeps the main bundle small: the app loads its data with
// TanStack Query, so route loaders would add code and nothing else.
const screen = (load: () => Promise<{ Component: () => ReactNode }>) =>
  lazy(() => load().then((module) => ({ default: module.Component })));

const SignIn = screen(() => import('./screens/SignIn'));
const SignedIn = screen(() => import('./screens/SignedIn'));
const Invoices = screen(() => import('./screens/Invoices'));
const NewInvoice = screen(() => import('./screens/NewInvoice'));
const InvoiceDetail = screen(() => import('./screens/InvoiceDetail'));
const Clients = screen(() => import('./screens/Clients'));
const Wallet = screen(() => import('./screens/Wallet'));
const Emails = screen(() => import('./screens/Emails'));
const Imports = screen(() => import('./screens/Imports'));
const BillingRuns = screen(() => import('./screens/BillingRuns'));
const BillingRun = screen(() => import('./screens/BillingRun'));
const Profile = screen(() => import('./screens/Profile'));

export function AppRoutes() {
  return (
    <Suspense fallback={<Loading />}>
      <Routes>
        <Route path="/sign-in" element={<SignIn />} />
        <Route path="/signed-in" element={<SignedIn />} />
        <Route element={<Layout />}>
          <Route index element={<Navigate to="/invoices" replace />} />
          <Route path="invoices" element={<Invoices />} />
          <Route path="invoices/new" element={<NewInvoice />} />
          <Route path="invoices/:invoiceId" element={<InvoiceDetail />} />
          <Route path="clients" element={<Clients />} />
          <Route path="wallet" element={<Wallet />} />
          <Route path="emails" element={<Emails />} />
          <Route path="imports" element={<Imports />} />
          <Route path="billing-runs" element={<BillingRuns />} />
          <Route path="billing-runs/:runId" element={<BillingRun />} />
          <Route path="profile" element={<Profile />} />
          <Route path="*" element={<NotFound />} />
        </Route>
      </Routes>
    </Suspense>
  );
}

export function App({ queryClient }: { queryClient: QueryClient }) {
  return (
    <QueryClientProvider client={queryClient}>
      <BrowserRouter>
        <AppRoutes />
      </BrowserRouter>
    </QueryClientProvider>
  );
}
