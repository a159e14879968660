// `node --import ./test/helpers/without-pg.mjs`: resolves `pg` as Node does when it is not
// installed (ERR_MODULE_NOT_FOUND), to test the optional-dependency path for real.
import { register } from 'node:module';

const hook = `export async function resolve(specifier, context, next) {
  if (specifier === 'pg' || specifier.startsWith('pg/')) {
    const err = new Error("Cannot find package 'pg' imported from " + context.parentURL);
    err.code = 'ERR_MODULE_NOT_FOUND';
    throw err;
  }
  return next(specifier, context);
}`;
register(`data:text/javascript,${encodeURIComponent(hook)}`);
