// Stands in for @rjsf/validator-ajv8, which @rjsf/core imports only for its test
// helper (getTestRegistry). ajv compiles schemas with `new Function`, which the
// console's Content-Security-Policy forbids; the console uses ./validator.ts instead.
const unavailable = () => {
  throw new Error('@rjsf/validator-ajv8 is not bundled: use src/lib/validator.ts');
};
export const customizeValidator = unavailable;
export const createPrecompiledValidator = unavailable;
export default new Proxy({}, { get: unavailable });
