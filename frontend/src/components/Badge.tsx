import { statusLabel, tone, type ServerState } from '../lib/status';

export function StatusBadge({ status }: { status: ServerState['status'] }) {
  return (
    <span className={`badge tone-${tone(status)}`} data-status={status}>
      <span className="dot" aria-hidden="true" />
      {statusLabel(status)}
    </span>
  );
}
