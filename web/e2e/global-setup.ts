import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BOUNCING_RECIPIENT, ADDRESSES_VARIABLE, type SuiteAddresses } from './suite';

const WEB = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const REPOSITORY = path.resolve(WEB, '..');
const SUITE_DIR = path.join(WEB, 'e2e-artifacts', 'suite');
// A dozen Python processes start at once on a small, shared machine: migrations, imports.
const START_TIMEOUT_MS = 6 * 60_000;

/**
 * Starts the whole suite (`python -m common.testing.suite`) on free ports with the gateway
 * serving dist/, unless LEDGERLINE_E2E_ADDRESSES already names a running one's addresses;
 * points the email providers' simulator at the gateway's webhooks. Returns the teardown.
 */
export default async function globalSetup(): Promise<() => Promise<void>> {
  const given = process.env[ADDRESSES_VARIABLE];
  if (given && existsSync(given)) {
    await prepareSimulators(JSON.parse(readFileSync(given, 'utf8')) as SuiteAddresses);
    return async () => {};
  }
  if (!existsSync(path.join(WEB, 'dist', 'index.html'))) {
    throw new Error('dist/ is not built: run `npm run build` (or `make web-e2e`) first');
  }
  rmSync(SUITE_DIR, { recursive: true, force: true });
  mkdirSync(SUITE_DIR, { recursive: true });
  const addressesFile = path.join(SUITE_DIR, 'addresses.json');
  const python = process.env.LEDGERLINE_PYTHON ?? path.join(REPOSITORY, '.venv', 'bin', 'python');
  const log = openSync(path.join(SUITE_DIR, 'suite.log'), 'a');
  const suite = spawn(
    python,
    [
      '-m',
      'common.testing.suite',
      '--addresses',
      addressesFile,
      '--static-root',
      path.join(WEB, 'dist'),
      '--logs',
      path.join(SUITE_DIR, 'logs'),
    ],
    { cwd: REPOSITORY, stdio: ['ignore', log, log] },
  );
  const stop = () => stopSuite(suite);
  try {
    await waitForFile(addressesFile, suite);
    const addresses = JSON.parse(readFileSync(addressesFile, 'utf8')) as SuiteAddresses;
    await prepareSimulators(addresses);
  } catch (error) {
    await stop();
    throw error;
  }
  process.env[ADDRESSES_VARIABLE] = addressesFile;
  return stop;
}

async function waitForFile(file: string, suite: ChildProcess): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (!existsSync(file)) {
    if (suite.exitCode !== null) {
      throw new Error(`the suite stopped (exit ${suite.exitCode}): see ${SUITE_DIR}/suite.log`);
    }
    if (Date.now() > deadline) {
      throw new Error(`the suite did not start in time: see ${SUITE_DIR}/suite.log`);
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

async function stopSuite(suite: ChildProcess): Promise<void> {
  if (suite.exitCode !== null) return;
  const exited = new Promise<void>((resolve) => suite.once('exit', () => resolve()));
  // SIGTERM: the suite stops its processes and drops its schemas.
  suite.kill('SIGTERM');
  const timeout = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 60_000));
  if ((await Promise.race([exited, timeout])) === 'timeout') suite.kill('SIGKILL');
}

/** Each accepted email is reported delivered by a signed webhook through the gateway, except
 * those to BOUNCING_RECIPIENT, which bounce. */
async function prepareSimulators(addresses: SuiteAddresses): Promise<void> {
  await control(addresses.mail, 'PUT', '/_control/webhook-target', {
    url: `${addresses.gateway}/webhooks`,
  });
  await control(addresses.mail, 'POST', '/_control/faults', {
    provider: 'sendgrid',
    mode: 'bounce',
    recipient: BOUNCING_RECIPIENT,
  });
}

async function control(base: string, method: string, route: string, body: unknown): Promise<void> {
  const response = await fetch(`${base}${route}`, {
    method,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`${method} ${route}: ${response.status} ${await response.text()}`);
}
