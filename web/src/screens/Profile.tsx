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
import * as check from '../lib/validate';

type Me = UserSchemas['schemas']['UserRead'];
const ADDRESS_FIELDS = ['line1', 'line2', 'city', 'region', 'postal_code', 'country'] as const;
type AddressValues = Record<(typeof ADDRESS_FIELDS)[number], string>;

export interface ProfileValues extends AddressValues {
  name: string;
  company_name: string;
  email: string;
}

/** The user service's rules for a profile; errors keyed as the API names the fields. */
export function validateProfile(values: ProfileValues): Record<string, string> {
  const errors: Record<string, string> = {};
  const optional = (key: keyof ProfileValues, max: number) => {
    const message = values[key].trim() ? check.required(max)(values[key]) : null;
    if (message) errors[key] = message;
  };
  optional('name', 200);
  optional('company_name', 200);
  if (values.email.trim() && check.email(values.email)) errors.email = check.email(values.email)!;
  const hasAddress = ADDRESS_FIELDS.some((key) => values[key].trim());
  if (hasAddress) {
    if (!values.line1.trim()) errors['address.line1'] = 'Enter the street address.';
    if (!values.city.trim()) errors['address.city'] = 'Enter the city.';
    if (!/^[A-Z]{2}$/.test(values.country.trim())) errors['address.country'] = 'Enter the two-letter country code, such as US or GB.';
    if (values.postal_code.trim() && !/^[A-Za-z0-9][A-Za-z0-9 -]{0,19}$/.test(values.postal_code.trim())) {
      errors['address.postal_code'] = 'Use letters, digits, spaces and hyphens.';
    }
  }
  return errors;
}

/** PATCH body: empty fields clear; no address at all clears the address. */
export function profileBody(values: ProfileValues) {
  const text = (value: string) => value.trim() || null;
  const hasAddress = ADDRESS_FIELDS.some((key) => values[key].trim());
  return {
    name: text(values.name),
    company_name: text(values.company_name),
    email: text(values.email),
    address: hasAddress
      ? {
          line1: values.line1.trim(),
          line2: text(values.line2),
          city: values.city.trim(),
          region: text(values.region),
          postal_code: text(values.postal_code),
          country: values.country.trim(),
        }
      : null,
  };
}

export function Component() {
  const me = useQuery({ queryKey: ['me'], queryFn: () => unwrap(userApi.GET('/api/users/me')) });
  return (
    <section>
      <PageTitle title="Profile">Profile</PageTitle>
      <ErrorAlert error={me.error} />
      {me.isPending ? <Loading what="Loading your profile" /> : null}
      {me.data ? <ProfileForm key={me.data.id} me={me.data} /> : null}
    </section>
  );
}

function ProfileForm({ me }: { me: Me }) {
  const queryClient = useQueryClient();
  const [values, setValues] = useState<ProfileValues>({
    name: me.name ?? '',
    company_name: me.company_name ?? '',
    email: me.email ?? '',
    line1: me.address?.line1 ?? '',
    line2: me.address?.line2 ?? '',
    city: me.address?.city ?? '',
    region: me.address?.region ?? '',
    postal_code: me.address?.postal_code ?? '',
    country: me.address?.country ?? '',
  });
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [error, setError] = useState<unknown>(null);
  const [saved, setSaved] = useState(false);
  const [busy, setBusy] = useState(false);
  const set = (key: keyof ProfileValues) => (event: React.ChangeEvent<HTMLInputElement>) => setValues({ ...values, [key]: event.target.value });

  async function onSubmit(event: React.FormEvent) {
    event.preventDefault();
    setSaved(false);
    const found = validateProfile(values);
    setErrors(found);
    if (Object.keys(found).length > 0) return;
    setBusy(true);
    setError(null);
    try {
      const updated = await unwrap(userApi.PATCH('/api/users/me', { body: profileBody(values) }));
      queryClient.setQueryData(['me'], updated);
      setSaved(true);
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
          <TextField label="Name" autoComplete="name" value={values.name} onChange={set('name')} error={errors.name} />
          <TextField label="Company" autoComplete="organization" value={values.company_name} onChange={set('company_name')} error={errors.company_name} hint="Shown on your invoices." />
          <TextField label="Email" type="email" autoComplete="email" value={values.email} onChange={set('email')} error={errors.email} />
          <fieldset>
            <legend>Business address (shown on your invoices)</legend>
            <TextField label="Street address" autoComplete="address-line1" value={values.line1} onChange={set('line1')} error={errors['address.line1']} />
            <TextField label="Address line 2 (optional)" autoComplete="address-line2" value={values.line2} onChange={set('line2')} error={errors['address.line2']} />
            <div className="field-row">
              <TextField label="City" autoComplete="address-level2" value={values.city} onChange={set('city')} error={errors['address.city']} />
              <TextField label="Region (optional)" autoComplete="address-level1" value={values.region} onChange={set('region')} error={errors['address.region']} />
            </div>
            <div className="field-row">
              <TextField label="Postal code (optional)" autoComplete="postal-code" value={values.postal_code} onChange={set('postal_code')} error={errors['address.postal_code']} />
              <TextField
                label="Country code"
                autoComplete="country"
                maxLength={2}
                value={values.country}
                onChange={(event) => setValues({ ...values, country: event.target.value.toUpperCase() })}
                error={errors['address.country']}
                hint="Two letters, such as US or GB."
              />
            </div>
          </fieldset>
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
        <p className="muted small">Signing out ends this browser’s sign-in; other devices stay signed in until their sign-in expires.</p>
      </section>
    </div>
  );
}
