/**
 * Multi-wrap envelopes (issue #15): what a failover costs and what a wrap adds to the envelope.
 *
 * - Cold unwraps (cache off, memory store) of a 2-slot envelope with its primary down and that
 *   slot's breaker open, against the same envelope with the primary up (target ≤ 1.2×); beside it
 *   the single-wrap envelope, and a primary that is down with no breaker (each unwrap asks it
 *   first). The slots are `local`-backed providers with an async unwrap and an off switch, so each
 *   call goes through the KMS call policy (deadline, breaker) as a network KMS's would, at a cost
 *   of microseconds: the policy's own overhead is as visible as it can be.
 * - Encoded envelope size (`encodeKmsBlob`) for 1 to 8 wraps: `local` slots, a `local` primary
 *   with `recipient` (x25519, x25519-mlkem768) wraps behind it, and a 2-of-3 threshold.
 *
 * Section `multi-wrap` of `npm run bench` (`BENCH_ONLY=multi-wrap`), or alone:
 * `npx tsx bench/multi-wrap.ts`.
 */
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { createLocalProvider } from '../providers/local.js';
import { generateRecipientKeyPair, type RecipientKind } from '../providers/recipient.js';
import { asReference, type CaseResult, formatTable, runCase } from '../src/bench/harness.js';
import { KmsEnvelopeClient } from '../src/client.js';
import { encodeKmsBlob } from '../src/envelope/codec.js';
import { ProviderUnavailableError } from '../src/errors.js';
import type { Kek } from '../src/keys/kek.js';
import type { KmsProvider, ProviderFactory } from '../src/providers/provider.js';
import type { KmsSlotInput } from '../src/providers/slot.js';
import { StorageConfig } from '../src/storage/config.js';
import type { KmsCallOptions } from '../src/unwrap/kms-calls.js';

/**
 * A slot's provider: `local` crypto (`inner`, shared by every client of the run, so that they all
 * open the same wraps) behind an async unwrap with no `unwrapSync`, so each call goes through the
 * KMS call policy; `down` fails every unwrap at once, as a KMS that refuses connections does.
 */
function switchedProvider(
  id: string,
  inner: KmsProvider,
  down: boolean,
): { provider: KmsProvider; calls: () => number } {
  let calls = 0;
  const provider: KmsProvider = {
    id,
    wrap: (kek, context) => inner.wrap(kek, context),
    async unwrap(wrapped, context) {
      calls++;
      if (down) throw new ProviderUnavailableError('bench: the KMS is down');
      return inner.unwrap(wrapped, context);
    },
  };
  return { provider, calls: () => calls };
}

const zero = (kek: Kek) => kek.zero();

/** The cold-unwrap rows: failover with the breaker open, and its references. */
async function failoverCases(): Promise<{ rows: CaseResult[]; notes: string[] }> {
  const inner = {
    primary: createLocalProvider({ masterKey: randomBytes(32), keyId: 'bench-primary-key' }),
    secondary: createLocalProvider({ masterKey: randomBytes(32), keyId: 'bench-secondary-key' }),
  };
  const store = StorageConfig.memory();
  /** A client of the shared store whose primary is up or down; breakers stay open all run. */
  const clientWith = (primaryDown: boolean, kmsCalls: KmsCallOptions = {}) => {
    const primary = switchedProvider('bench-primary', inner.primary, primaryDown);
    const secondary = switchedProvider('bench-secondary', inner.secondary, false);
    const providers: Record<string, ProviderFactory> = {
      'bench-primary': () => primary.provider,
      'bench-secondary': () => secondary.provider,
    };
    const client = new KmsEnvelopeClient({
      store,
      kms: {
        slots: { primary: { provider: 'bench-primary' }, secondary: { provider: 'bench-secondary' } },
        providers,
      },
      cache: false,
      kmsCalls: { retries: 0, breakerResetMs: 3_600_000, ...kmsCalls },
    });
    return { client, primaryCalls: primary.calls };
  };
  const up = clientWith(false);
  const down = clientWith(true);
  const unguarded = clientWith(true, { breaker: false });
  try {
    (await up.client.createIndex('two', { slots: ['primary', 'secondary'] })).zero();
    (await up.client.createIndex('one', { slot: 'secondary' })).zero();
    // Open the down client's breaker on the primary: each of these unwraps fails over.
    for (let i = 0; i < 20; i++) (await down.client.unwrap('two')).zero();
    const callsWhenOpen = down.primaryCalls();
    for (let i = 0; i < 10; i++) (await down.client.unwrap('two')).zero();
    if (down.primaryCalls() !== callsWhenOpen) throw new Error("bench: the primary's breaker did not open");
    const primaryUp = () => up.client.unwrap('two');
    const failover = () => down.client.unwrap('two');
    const single = () => up.client.unwrap('one');
    /** Cold unwraps of `ours` against `baseline`, each KEK zeroed as a caller would. */
    const cold = (name: string, ours: () => Promise<Kek>, baseline: () => Promise<Kek>) =>
      runCase({ name, ours, useOurs: zero, baseline, useBaseline: zero, target: { maxRatio: 1.2 } });
    const rows = [
      await cold(
        'cold unwrap, 2-slot envelope, primary down and its breaker open (secondary serves), vs primary up',
        failover,
        primaryUp,
      ),
    ];
    const callsWhileOpen = down.primaryCalls() - callsWhenOpen;
    rows.push(
      asReference(
        await cold(
          'cold unwrap, 2-slot envelope, primary up, vs a single-wrap envelope (same provider)',
          primaryUp,
          single,
        ),
      ),
      asReference(
        await cold(
          'cold unwrap, 2-slot envelope, primary down and its breaker open, vs a single-wrap envelope',
          failover,
          single,
        ),
      ),
      asReference(
        await cold(
          'cold unwrap, 2-slot envelope, primary down and no breaker (asked first, fails at once), vs primary up',
          () => unguarded.client.unwrap('two'),
          primaryUp,
        ),
      ),
    );
    const stats = down.client.stats();
    return {
      rows,
      notes: [
        `multi-wrap failover: ${callsWhenOpen} calls to the down primary before its breaker opened, ${callsWhileOpen} during the timed failover unwraps; ${stats.failovers} failovers, ${stats.slots.secondary?.served ?? 0} served by the secondary`,
      ],
    };
  } finally {
    for (const { client } of [up, down, unguarded]) await client.close();
  }
}

/** Encoded size of the envelope `createIndex` makes for `slots` (and `threshold`). */
async function envelopeBytes(
  slots: Record<string, KmsSlotInput>,
  names: readonly string[],
  threshold?: number,
): Promise<number> {
  const client = new KmsEnvelopeClient({
    store: StorageConfig.memory(),
    kms: { slots, secrets: { allowLiteral: true } },
    cache: false,
  });
  try {
    const options =
      names.length === 1 ? { slot: names[0]! } : { slots: names, ...(threshold ? { threshold } : {}) };
    (await client.createIndex('orders-2026', options)).zero();
    return encodeKmsBlob(await client.getEnvelope('orders-2026')).length;
  } finally {
    await client.close();
  }
}

const MAX_WRAPS = 8;
const literalKey = () => `literal:${randomBytes(32).toString('base64url')}`;

/** Envelope sizes per number of wraps; returns the table lines and one-line notes. */
async function sizeCases(): Promise<{ table: string[]; notes: string[] }> {
  const local: Record<string, KmsSlotInput> = {};
  for (let i = 1; i <= MAX_WRAPS; i++) local[`local-${i}`] = { provider: 'local', masterKey: literalKey() };
  const recipients = async (kind: RecipientKind) => {
    const slots: Record<string, KmsSlotInput> = { 'local-1': local['local-1']! };
    for (let i = 2; i <= MAX_WRAPS; i++) {
      const pair = await generateRecipientKeyPair(kind);
      slots[`${kind}-${i}`] = { provider: 'recipient', options: { publicKey: pair.publicKey } };
    }
    return slots;
  };
  const kinds: RecipientKind[] = ['x25519', 'x25519-mlkem768'];
  const columns: Array<{ label: string; slots: Record<string, KmsSlotInput> }> = [
    { label: 'local', slots: local },
  ];
  for (const kind of kinds)
    columns.push({ label: `local + recipient ${kind}`, slots: await recipients(kind) });
  const sizes: number[][] = [];
  for (const { slots } of columns) {
    const names = Object.keys(slots);
    const column: number[] = [];
    for (let n = 1; n <= MAX_WRAPS; n++) column.push(await envelopeBytes(slots, names.slice(0, n)));
    sizes.push(column);
  }
  const cell = (column: number[], n: number) =>
    n === 0 ? `${column[0]} B` : `${column[n]} B (+${column[n]! - column[n - 1]!})`;
  const table = [
    `| wraps | ${columns.map((c) => c.label).join(' | ')} |`,
    `|---|${columns.map(() => '---|').join('')}`,
    ...Array.from(
      { length: MAX_WRAPS },
      (_, n) => `| ${n + 1} | ${sizes.map((column) => cell(column, n)).join(' | ')} |`,
    ),
  ];
  const three = ['local-1', 'local-2', 'local-3'];
  const anyOf = await envelopeBytes(local, three);
  const twoOfThree = await envelopeBytes(local, three, 2);
  const perWrap = (column: number[]) => Math.round((column[MAX_WRAPS - 1]! - column[0]!) / (MAX_WRAPS - 1));
  return {
    table,
    notes: [
      `envelope size (encodeKmsBlob): 1 local wrap ${sizes[0]![0]} B; each added wrap about +${perWrap(sizes[0]!)} B local, +${perWrap(sizes[1]!)} B recipient x25519, +${perWrap(sizes[2]!)} B recipient x25519-mlkem768; ${MAX_WRAPS} local wraps ${sizes[0]![MAX_WRAPS - 1]} B`,
      `envelope size, 3 local slots: any-of ${anyOf} B, threshold 2-of-3 (Shamir shares) ${twoOfThree} B`,
    ],
  };
}

/** The section's rows and notes (the size table goes into the notes, one line each). */
export async function multiWrapCases(): Promise<{ rows: CaseResult[]; notes: string[] }> {
  const failover = await failoverCases();
  const sizes = await sizeCases();
  return { rows: failover.rows, notes: [...failover.notes, ...sizes.notes] };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const failover = await failoverCases();
  const sizes = await sizeCases();
  console.log(`kms-envelope multi-wrap benchmarks (node ${process.version}, one process)\n`);
  console.log(formatTable(failover.rows));
  console.log('');
  console.log(sizes.table.join('\n'));
  console.log('');
  for (const note of [...failover.notes, ...sizes.notes]) console.log(`- ${note}`);
}
