import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ts from 'typescript';
import { afterAll, describe, expect, it } from 'vitest';
import { GCM_NONCE_LENGTH, NoncePool } from '../../src/crypto/nonce-pool.js';

const POOL_SOURCE = new URL('../../src/crypto/nonce-pool.ts', import.meta.url);

describe('NoncePool after a fork (process.pid changes)', () => {
  it('refills instead of handing the parent’s remaining nonces to the child', () => {
    const pool = new NoncePool();
    const inParent = pool.take();
    // What the parent would hand out next, read straight from the pool's buffer.
    const parentNext = Buffer.from(inParent.buffer, inParent.byteOffset + GCM_NONCE_LENGTH, GCM_NONCE_LENGTH);
    const pid = Object.getOwnPropertyDescriptor(process, 'pid');
    Object.defineProperty(process, 'pid', { ...pid, value: process.pid + 1 });
    try {
      const inChild = pool.take();
      expect(inChild.buffer).not.toBe(inParent.buffer);
      expect(inChild.equals(parentNext)).toBe(false);
    } finally {
      if (pid) Object.defineProperty(process, 'pid', pid);
    }
  });
});

describe('NoncePool in a V8 startup snapshot', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ke-snapshot-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  // Node 20's snapshot builder runs one CommonJS script whose `require` loads built-in modules
  // only, so the real nonce-pool.ts is compiled to CommonJS (by the project's own TypeScript) and
  // wrapped in a module function. It imports only `node:` modules; if that ever changes this
  // test has to bundle instead, and says so here rather than silently testing a copy.
  const compiled = ts.transpileModule(readFileSync(POOL_SOURCE, 'utf8'), {
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 },
  }).outputText;
  const entry = join(dir, 'entry.cjs');
  const blob = join(dir, 'snap.blob');
  const builtNonceFile = join(dir, 'built-nonce');

  function build(): void {
    expect(compiled).not.toMatch(/require\("\.{1,2}\//);
    writeFileSync(
      entry,
      `const poolModule = { exports: {} };
(function (exports, require, module) {
${compiled}
})(poolModule.exports, require, poolModule);
const { noncePool } = poolModule.exports;
// Fill the pool at build time, as an app that seals anything while building would. (No
// Buffer.from copy: that would leave the nonce in Node's shared Buffer pool.)
require('node:fs').writeFileSync(${JSON.stringify(builtNonceFile)}, noncePool.take().toString('hex'));
require('node:v8').startupSnapshot.setDeserializeMainFunction(() => {
  process.stdout.write(noncePool.take().toString('hex'));
});
`,
    );
    execFileSync(process.execPath, ['--snapshot-blob', blob, '--build-snapshot', entry], { cwd: dir });
  }

  it('three processes booted from one snapshot hand out different first nonces', () => {
    build();
    const firsts = [0, 1, 2].map(() =>
      execFileSync(process.execPath, ['--snapshot-blob', blob], { cwd: dir, encoding: 'utf8' }),
    );
    for (const nonce of firsts) expect(nonce).toMatch(/^[0-9a-f]{24}$/);
    expect(new Set(firsts).size).toBe(3);
  });

  it('the snapshot blob does not carry the pool filled while it was built', () => {
    build();
    const builtNonce = Buffer.from(readFileSync(builtNonceFile, 'utf8'), 'hex');
    expect(builtNonce).toHaveLength(GCM_NONCE_LENGTH);
    expect(readFileSync(blob).includes(builtNonce)).toBe(false);
  });
});
