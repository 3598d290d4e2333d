// Owns the JSON Schema validator behind the generated test-call form. rjsf's own
// validator (ajv) compiles schemas with `new Function`, which the console's
// Content-Security-Policy forbids (no 'unsafe-eval'); @cfworker/json-schema interprets
// schemas instead. This adapts it to rjsf's `ValidatorType`. The gateway remains the
// authority: the console sends what is typed and shows the gateway's violations.

import { Validator } from '@cfworker/json-schema';
import type { Schema, SchemaDraft } from '@cfworker/json-schema';
import {
  ErrorSchemaBuilder,
  toErrorSchema,
  type CustomValidator,
  type ErrorSchema,
  type ErrorTransformer,
  type RJSFSchema,
  type RJSFValidationError,
  type UiSchema,
  type ValidationData,
  type ValidatorType,
} from '@rjsf/utils';

function draftOf(schema: RJSFSchema): SchemaDraft {
  const uri = typeof schema.$schema === 'string' ? schema.$schema : '';
  if (uri.includes('draft-04')) return '4';
  if (uri.includes('draft-07') || uri.includes('draft-06')) return '7';
  if (uri.includes('2019-09')) return '2019-09';
  return '2020-12';
}

/** `/a/0/b~1c` -> `['a', '0', 'b/c']`. */
export function pointerTokens(pointer: string): string[] {
  const path = pointer.replace(/^#/, '');
  if (path === '' || path === '/') return [];
  return path
    .replace(/^\//, '')
    .split('/')
    .map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function errorsOf(schema: RJSFSchema, data: unknown): RJSFValidationError[] {
  let result;
  try {
    result = new Validator(schema as Schema, draftOf(schema), false).validate(data);
  } catch (err) {
    return [{ name: 'schema', message: String(err), stack: `schema: ${String(err)}`, property: '' }];
  }
  if (result.valid) return [];
  // Only the innermost units: the outer ones repeat them ("property x does not match").
  return result.errors
    .filter((unit) => !['properties', 'items', 'allOf', '$ref', 'prefixItems'].includes(unit.keyword))
    .map((unit) => {
      const tokens = pointerTokens(unit.instanceLocation);
      const property = tokens.length ? `.${tokens.join('.')}` : '';
      return {
        name: unit.keyword,
        message: unit.error,
        property,
        schemaPath: unit.keywordLocation,
        stack: `${property || 'value'} ${unit.error}`,
      };
    });
}

export const validator: ValidatorType = {
  validateFormData(
    formData: unknown,
    schema: RJSFSchema,
    customValidate?: CustomValidator,
    transformErrors?: ErrorTransformer,
    uiSchema?: UiSchema,
  ): ValidationData<unknown> {
    let errors = errorsOf(schema, formData);
    if (transformErrors) errors = transformErrors(errors, uiSchema);
    let errorSchema = toErrorSchema(errors) as ErrorSchema;
    if (customValidate) {
      // The console passes none; kept to honour the interface.
      errorSchema = errorSchema ?? {};
    }
    return { errors, errorSchema };
  },
  isValid(schema: RJSFSchema, formData: unknown, rootSchema: RJSFSchema): boolean {
    const withDefs = { ...schema, $defs: { ...(rootSchema.$defs ?? {}), ...(schema.$defs ?? {}) } };
    try {
      return new Validator(withDefs as Schema, draftOf(rootSchema)).validate(formData).valid;
    } catch {
      return false;
    }
  },
  rawValidation<Result>(schema: RJSFSchema, formData?: unknown) {
    return { errors: errorsOf(schema, formData) as Result[] };
  },
};

/** The gateway's violations (`{pointer, message}`) as rjsf `extraErrors` on the fields. */
export function violationsToErrorSchema(violations: { pointer: string; message: string }[]): ErrorSchema {
  const builder = new ErrorSchemaBuilder();
  for (const v of violations) {
    const tokens = pointerTokens(v.pointer);
    builder.addErrors(`${v.message} (${v.pointer || '/'})`, tokens.length ? tokens : undefined);
  }
  return builder.ErrorSchema;
}
