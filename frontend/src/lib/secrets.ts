// The admin API's masking rules as the console needs them to explain a masked value:
// the mask itself and which default headers are credentials (the same rule as
// `is_credential_header` in core/src/model.rs; keep the two equal).

/** What the admin API returns for a stored secret; posted back, it keeps the value. */
export const MASK = '********';

const CREDENTIAL_PARTS = ['auth', 'token', 'secret', 'passw', 'session', 'signature', 'credential'];

/** Whether the admin API masks this default header's value, going by its name
 *  (case-insensitive): `Cookie`, any name ending in `key`, any name holding one of
 *  {@link CREDENTIAL_PARTS} (`Authorization`, `X-Auth-Token`, …). */
export function isCredentialHeader(name: string): boolean {
  const lower = name.trim().toLowerCase();
  return lower === 'cookie' || lower.endsWith('key') || CREDENTIAL_PARTS.some((part) => lower.includes(part));
}
