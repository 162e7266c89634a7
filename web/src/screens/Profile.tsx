import { useQuery, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { unwrap, userApi } from '../api/client';
import { fieldErrors } from '../api/problem';
import type { components as UserSchemas } from '../api/user';
import { ErrorAlert } from '../components/ErrorAlert';
import { TextField } from '../components/Field';
import { Loading } from '../components/Loading';
import { PageTitle } from '../components/PageTitle';
import { formatDateTime } from '../format';

export function Component() {
  const me = useQuery({ queryKey: ['me'], queryFn: () => unwrap(userApi.GET('/api/users/me')) });
  return (
    <section>
      <PageTitle title="Profile">Profile</PageTitle>
      <ErrorAlert error={me.error} />
      {me.isPending ? <Loading what="Loading your profile" /> : null}
      {me.data ? <ProfileForm key={me.data.updated_at} me={me.data} /> : null}
    </section>
  );
}

type Me = UserSchemas['schemas']['UserRead'];

function ProfileForm({ me }: { me: Me }) {
  const queryClient = useQueryClient();
  const [name, setName] = useState(me.name ?? '');
  const [company, setCompany] = useState(me.company_name ?? '');
  const [email, setEmail] = useState(me.email ?? '');
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [error, setError] = useState<unknown>(null);
  const [saved, setSaved] = useState(false);
  const [busy, setBusy] = useState(false);

  async function onSubmit(event: React.FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    setSaved(false);
    try {
      const updated = await unwrap(
        userApi.PATCH('/api/users/me', {
          body: { name: name.trim() || null, company_name: company.trim() || null, email: email.trim() || null },
        }),
      );
      queryClient.setQueryData(['me'], updated);
      setSaved(true);
      setErrors({});
    } catch (caught) {
      setError(caught);
      setErrors(fieldErrors(caught));
    } finally {
      setBusy(false);
    }
  }

  return (
    <div className="grid-2">
      <section aria-labelledby="details-heading" className="panel">
        <h2 id="details-heading">Your details</h2>
        <form onSubmit={onSubmit} noValidate>
          {saved ? (
            <div className="alert alert-success" role="status">
              Saved.
            </div>
          ) : null}
          <ErrorAlert error={error} />
          <TextField label="Name" autoComplete="name" value={name} onChange={(event) => setName(event.target.value)} error={errors.name} />
          <TextField label="Company" autoComplete="organization" value={company} onChange={(event) => setCompany(event.target.value)} error={errors.company_name} hint="Shown on your invoices." />
          <TextField label="Email" type="email" autoComplete="email" value={email} onChange={(event) => setEmail(event.target.value)} error={errors.email} />
          <button type="submit" className="button-primary" disabled={busy}>
            {busy ? 'Saving…' : 'Save'}
          </button>
        </form>
      </section>
      <section aria-labelledby="account-heading" className="panel">
        <h2 id="account-heading">Account</h2>
        <dl className="summary">
          <div>
            <dt>Member since</dt>
            <dd>{formatDateTime(me.created_at)}</dd>
          </div>
        </dl>
      </section>
    </div>
  );
}
