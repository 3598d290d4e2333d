// Edits a string map (default headers; a tool's query, header and body mappings) as
// rows of two inputs, with an optional hint under a row (a masked header's value).

import { useId, type ReactNode } from 'react';

export type Pairs = [string, string][];

export function toPairs(map?: Record<string, string>): Pairs {
  return Object.entries(map ?? {});
}

export function fromPairs(pairs: Pairs): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of pairs) if (k.trim()) out[k.trim()] = v;
  return out;
}

export function KeyValueEditor({
  label,
  keyLabel,
  valueLabel,
  pairs,
  onChange,
  error,
  testId,
  valueHint,
}: {
  label: string;
  keyLabel: string;
  valueLabel: string;
  pairs: Pairs;
  onChange: (pairs: Pairs) => void;
  error?: string;
  testId?: string;
  /** A hint shown under the row of this key and value (none when it returns nothing). */
  valueHint?: (key: string, value: string) => ReactNode;
}) {
  const id = useId();
  return (
    <fieldset className={`kv${error ? ' invalid' : ''}`} data-testid={testId}>
      <legend>{label}</legend>
      {pairs.length === 0 && <p className="muted small">None.</p>}
      {pairs.map(([k, v], i) => {
        const hint = valueHint?.(k, v);
        const hintId = `${id}-hint-${i}`;
        return (
          <div className="kv-item" key={i}>
            <div className="kv-row">
              <input
                aria-label={`${label}: ${keyLabel} ${i + 1}`}
                placeholder={keyLabel}
                value={k}
                onChange={(e) => onChange(pairs.map((p, j) => (j === i ? [e.target.value, p[1]] : p)))}
              />
              <input
                aria-label={`${label}: ${valueLabel} ${i + 1}`}
                aria-describedby={hint ? hintId : undefined}
                placeholder={valueLabel}
                value={v}
                onChange={(e) => onChange(pairs.map((p, j) => (j === i ? [p[0], e.target.value] : p)))}
              />
              <button type="button" className="icon" aria-label={`Remove ${label} row ${i + 1}`} onClick={() => onChange(pairs.filter((_, j) => j !== i))}>
                ×
              </button>
            </div>
            {hint && (
              <small id={hintId} className="hint kv-hint" data-testid="kv-hint">
                {hint}
              </small>
            )}
          </div>
        );
      })}
      <button type="button" className="small" id={id} onClick={() => onChange([...pairs, ['', '']])}>
        + Add
      </button>
      {error && (
        <small className="error-text" role="alert">
          {error}
        </small>
      )}
    </fieldset>
  );
}
