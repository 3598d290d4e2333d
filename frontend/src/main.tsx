import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { App } from './App';
import { ApiError } from './lib/api';
import './styles.css';

const client = new QueryClient({
  defaultOptions: {
    queries: {
      // Fresh by the event stream; a refetch on focus covers a sleeping laptop.
      staleTime: 30_000,
      // Only what may pass: no answer or a 5xx (a 404 or 401 will not change).
      retry: (count, err) => err instanceof ApiError && (err.status === 0 || err.status >= 500) && count < 2,
      retryDelay: 500,
    },
  },
});

const root = document.getElementById('root');
if (root) {
  createRoot(root).render(
    <StrictMode>
      <QueryClientProvider client={client}>
        <App />
      </QueryClientProvider>
    </StrictMode>,
  );
}
