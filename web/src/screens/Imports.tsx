import { useQuery, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { syncApi, unwrap } from '../api/client';
import { ApiError, fieldErrors } from '../api/problem';
import { Dialog } from '../components/Dialog';
import { ErrorAlert } from '../components/ErrorAlert';
import { TextField } from '../components/Field';
import { Loading } from '../components/Loading';
import { PageTitle } from '../components/PageTitle';
import { StatusBadge } from '../components/StatusBadge';
import { formatDateTime } from '../format';
import { POLL_INTERVAL_MS, syncInFlight } from '../lib/polling';

export function Component() {
  const queryClient = useQueryClient();
  const connections = useQuery({ queryKey: ['sync', 'connections'], queryFn: () => unwrap(syncApi.GET('/api/sync/connections')) });
  const connection = connections.data?.items[0];
  const status = useQuery({
    queryKey: ['sync', 'status'],
    queryFn: () => unwrap(syncApi.GET('/api/sync/status')),
    enabled: Boolean(connection),
    refetchInterval: (query) => (query.state.data && syncInFlight(query.state.data.state) ? POLL_INTERVAL_MS : false),
  });
  const [starting, setStarting] = useState(false);
  const [startError, setStartError] = useState<unknown>(null);
  const [confirmDisconnect, setConfirmDisconnect] = useState(false);

  async function startSync() {
    setStarting(true);
    setStartError(null);
    try {
      const started = await unwrap(syncApi.POST('/api/sync/runs'));
      queryClient.setQueryData(['sync', 'status'], started);
    } catch (caught) {
      setStartError(caught);
    } finally {
      setStarting(false);
    }
  }

  const data = status.data;
  return (
    <section>
      <PageTitle title="Imports">Imports</PageTitle>
      <p>Connect your billing platform to import its invoices. A sync reads its clients, invoices and removals, and runs again on its own.</p>
      <ErrorAlert error={connections.error} />
      {connections.isPending ? <Loading what="Loading your connection" /> : null}
      {connections.isSuccess && !connection ? <ConnectForm /> : null}
      {connection ? (
        <div className="grid-2">
          <section aria-labelledby="connection-heading" className="panel">
            <h2 id="connection-heading">Connection</h2>
            <dl className="summary">
              <div>
                <dt>Billing platform</dt>
                <dd className="break">{connection.base_url}</dd>
              </div>
              <div>
                <dt>Connected</dt>
                <dd>{formatDateTime(connection.created_at)}</dd>
              </div>
            </dl>
            <div className="button-row">
              <button type="button" className="button-primary" onClick={startSync} disabled={starting || (data ? syncInFlight(data.state) : false)}>
                {starting ? 'Starting…' : 'Sync now'}
              </button>
              <button type="button" className="button-quiet" onClick={() => setConfirmDisconnect(true)}>
                Disconnect
              </button>
            </div>
            <ErrorAlert error={startError} />
          </section>
          <section aria-labelledby="sync-heading" className="panel">
            <h2 id="sync-heading">Sync</h2>
            {status.isPending ? <Loading what="Loading the sync status" /> : null}
            {status.error && !(status.error instanceof ApiError && status.error.status === 404) ? <ErrorAlert error={status.error} /> : null}
            {data ? (
              <dl className="summary" aria-live="polite">
                <div>
                  <dt>State</dt>
                  <dd>
                    <StatusBadge status={data.state} />
                    {syncInFlight(data.state) ? <span className="muted"> reading {data.phase}</span> : null}
                  </dd>
                </div>
                <div>
                  <dt>Progress</dt>
                  <dd>
                    {data.pages_read} pages read, {data.invoices_seen} invoices seen, {data.invoices_changed} changed, {data.invoices_skipped} skipped
                  </dd>
                </div>
                <div>
                  <dt>Started</dt>
                  <dd>{data.sync_started_at ? formatDateTime(data.sync_started_at) : '—'}</dd>
                </div>
                <div>
                  <dt>Last successful run</dt>
                  <dd>{data.last_success_at ? formatDateTime(data.last_success_at) : 'Not yet'}</dd>
                </div>
                {data.last_error ? (
                  <div>
                    <dt>Last error</dt>
                    <dd className="reason">
                      {data.last_error}
                      {data.last_error_at ? ` (${formatDateTime(data.last_error_at)})` : ''}
                    </dd>
                  </div>
                ) : null}
                {data.next_attempt_at ? (
                  <div>
                    <dt>Next attempt</dt>
                    <dd>{formatDateTime(data.next_attempt_at)}</dd>
                  </div>
                ) : null}
              </dl>
            ) : null}
          </section>
        </div>
      ) : null}
      {confirmDisconnect && connection ? (
        <DisconnectDialog
          connectionId={connection.id}
          onClose={() => setConfirmDisconnect(false)}
          onDone={() => {
            setConfirmDisconnect(false);
            queryClient.removeQueries({ queryKey: ['sync', 'status'] });
            void queryClient.invalidateQueries({ queryKey: ['sync', 'connections'] });
          }}
        />
      ) : null}
    </section>
  );
}

function ConnectForm() {
  const queryClient = useQueryClient();
  const [baseUrl, setBaseUrl] = useState('');
  const [apiKey, setApiKey] = useState('');
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  async function onSubmit(event: React.FormEvent) {
    event.preventDefault();
    const found: Record<string, string> = {};
    if (!/^https?:\/\/\S{4,}$/.test(baseUrl.trim()) || baseUrl.trim().length > 500) found.base_url = 'Enter the platform’s API address, such as https://api.billing.example.';
    if (!apiKey.trim()) found.api_key = 'Enter the API key the platform gave you.';
    setErrors(found);
    if (Object.keys(found).length > 0) return;
    setBusy(true);
    setError(null);
    try {
      await unwrap(syncApi.POST('/api/sync/connections', { body: { base_url: baseUrl.trim(), api_key: apiKey.trim() } }));
      setApiKey('');
      await queryClient.invalidateQueries({ queryKey: ['sync'] });
    } catch (caught) {
      setError(caught);
      setErrors(fieldErrors(caught));
    } finally {
      setBusy(false);
    }
  }

  return (
    <section aria-labelledby="connect-heading" className="panel narrow">
      <h2 id="connect-heading">Connect a billing platform</h2>
      <form onSubmit={onSubmit} noValidate>
        <ErrorAlert error={error} />
        <TextField label="API address" type="url" value={baseUrl} placeholder="https://api.billing.example" onChange={(event) => setBaseUrl(event.target.value)} error={errors.base_url} required />
        <TextField
          label="API key"
          type="password"
          autoComplete="off"
          value={apiKey}
          onChange={(event) => setApiKey(event.target.value)}
          error={errors.api_key}
          hint="Kept encrypted; it is never shown again."
          required
        />
        <button type="submit" className="button-primary" disabled={busy}>
          {busy ? 'Connecting…' : 'Connect'}
        </button>
      </form>
    </section>
  );
}

function DisconnectDialog({ connectionId, onClose, onDone }: { connectionId: string; onClose: () => void; onDone: () => void }) {
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  async function confirm() {
    setBusy(true);
    try {
      await unwrap(syncApi.DELETE('/api/sync/connections/{connection_id}', { params: { path: { connection_id: connectionId } } }));
      onDone();
    } catch (caught) {
      setError(caught);
    } finally {
      setBusy(false);
    }
  }
  return (
    <Dialog title="Disconnect the billing platform?" onClose={onClose}>
      <p>Invoices already imported stay. No new ones are imported until you connect again.</p>
      <ErrorAlert error={error} />
      <div className="button-row">
        <button type="button" className="button-danger" onClick={confirm} disabled={busy}>
          Disconnect
        </button>
        <button type="button" className="button-secondary" onClick={onClose}>
          Cancel
        </button>
      </div>
    </Dialog>
  );
}
