import { Link } from 'react-router';
import { PageTitle } from '../components/PageTitle';

export function NotFound() {
  return (
    <section>
      <PageTitle title="Not found">Page not found</PageTitle>
      <p>
        There is nothing at this address. <Link to="/invoices">Go to your invoices</Link>.
      </p>
    </section>
  );
}
