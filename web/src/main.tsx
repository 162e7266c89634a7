import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { session } from './api/client';
import { App } from './App';
import { createQueryClient } from './queryClient';
import './styles.css';

// A reload has no access token in memory: the refresh cookie, if there is one, gets one.
session.refresh().catch(() => session.end(false));

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App queryClient={createQueryClient()} />
  </StrictMode>,
);
