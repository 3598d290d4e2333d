// The console is served by mcp-admin under /dashboard/ (and by the gateway in front of
// it). `base: './'`: every asset URL is relative, resolved against the `<base href>`
// the admin API puts into index.html, so the build works under any prefix and origin.
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';
import { fileURLToPath } from 'node:url';

export default defineConfig({
  base: './',
  plugins: [react()],
  resolve: {
    // @rjsf/core imports ajv only for a test helper; ajv needs 'unsafe-eval', which the
    // console's CSP forbids, so it is never bundled (src/lib/validator.ts validates).
    alias: { '@rjsf/validator-ajv8': fileURLToPath(new URL('./src/lib/no-ajv.ts', import.meta.url)) },
  },
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    sourcemap: false,
    chunkSizeWarningLimit: 1500,
  },
  server: {
    // `npm run dev`: the hub's gateway (make run) answers /api and /mcp.
    proxy: {
      '/api': 'http://127.0.0.1:8080',
      '/mcp': 'http://127.0.0.1:8080',
    },
  },
});
