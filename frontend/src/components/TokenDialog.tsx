// Asks for the admin token once (after the first 401) and keeps it for the browser
// session (sessionStorage). A wrong token gets a clear message.

import { useEffect, useRef, useState } from 'react';
import { setToken } from '../lib/api';

export function TokenDialog({ hadToken, onClose }: { hadToken: boolean; onClose: () => void }) {
  const ref = useRef<HTMLDialogElement>(null);
  const [value, setValue] = useState('');

  useEffect(() => {
    const dialog = ref.current;
    if (dialog && !dialog.open) dialog.showModal();
  }, []);

  return (
    <dialog ref={ref} className="dialog" aria-labelledby="token-title" onCancel={onClose}>
      <form
        method="dialog"
        onSubmit={(e) => {
          e.preventDefault();
          if (!value.trim()) return;
          setToken(value.trim());
          onClose();
        }}
      >
        <h2 id="token-title">Admin token required</h2>
        {hadToken ? (
          <p className="error-text" role="alert">
            The admin API refused the token (401 unauthorized). Enter the value of <code>MCP_ADMIN_TOKEN</code>.
          </p>
        ) : (
          <p>
            This hub's admin API requires <code>MCP_ADMIN_TOKEN</code>. It is kept for this browser session only.
          </p>
        )}
        <label className="field">
          <span>Token</span>
          <input
            type="password"
            autoComplete="off"
            autoFocus
            value={value}
            onChange={(e) => setValue(e.target.value)}
            name="token"
          />
        </label>
        <div className="actions">
          <button type="button" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" className="primary">
            Use token
          </button>
        </div>
      </form>
    </dialog>
  );
}
