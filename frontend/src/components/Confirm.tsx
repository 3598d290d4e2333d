// A button that asks before it acts (restart, delete): a modal <dialog>, keyboard
// reachable, Escape cancels.

import { useRef, useState, type ReactNode } from 'react';

export function ConfirmButton({
  label,
  title,
  children,
  confirmLabel,
  danger,
  onConfirm,
  disabled,
  small,
}: {
  label: string;
  title: string;
  children: ReactNode;
  confirmLabel: string;
  danger?: boolean;
  disabled?: boolean;
  small?: boolean;
  onConfirm: () => void | Promise<void>;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const [busy, setBusy] = useState(false);
  return (
    <>
      <button type="button" className={`${danger ? 'danger' : ''}${small ? ' small' : ''}`} disabled={disabled} onClick={() => ref.current?.showModal()}>
        {label}
      </button>
      <dialog ref={ref} className="dialog" aria-label={title}>
        <h2>{title}</h2>
        <div>{children}</div>
        <div className="actions">
          <button type="button" onClick={() => ref.current?.close()}>
            Cancel
          </button>
          <button
            type="button"
            className={danger ? 'danger solid' : 'primary'}
            disabled={busy}
            onClick={async () => {
              setBusy(true);
              try {
                await onConfirm();
              } finally {
                setBusy(false);
                ref.current?.close();
              }
            }}
          >
            {confirmLabel}
          </button>
        </div>
      </dialog>
    </>
  );
}
