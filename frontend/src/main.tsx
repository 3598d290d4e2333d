import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { App } from './App';
import { isUnauthorized } from './lib/api';
import './styles.css';

const client = new QueryClient({
  defaultOptions: {
    queries: {
      // Fresh by the event stream; a refetch on focus covers a sleeping laptop.
      staleTime: 30_000,
      retry: (count, err) => !isUnauthorized(err) && count < 2,
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
