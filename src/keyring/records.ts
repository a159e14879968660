/**
 * The records of the DEK layer, stored beside the envelope (see RecordStore):
 *
 * - `dek/<dek-id>`: a DEK record — the DEK wrapped under the index's KEK in the wire format,
 *   `$A256GCM$<kek-slot-id>$<params>$<blob>`, bound (AAD) to the index and the DEK id;
 * - `meta/kek-check.<kek-slot-id>`: a fixed plaintext encrypted under that KEK, which tells a
 *   wrong KEK from corrupt data;
 * - `meta/active`: the id of the DEK new values are encrypted under;
 * - `meta/rotation`: a KEK rotation in progress (the new envelope, not yet pushed);
 * - `meta/kdf`: the PBKDF2 parameters of a passphrase KEK.
 *
 * @module
 */
import { MalformedTokenError } from '../errors.js';
import { type DekId, type KekSlotId, parseDekId, parseKekSlotId } from '../wire/key-id.js';

/** Whether a DEK may encrypt new values (every DEK keeps decrypting). */
export type DekState = 'enabled' | 'deactivated';

/** A DEK record as stored (JSON). */
export interface DekRecord {
  readonly id: DekId;
  readonly alg: string;
  /** The DEK wrapped under the KEK of slot `kekSlotId`, in the wire format. */
  readonly wrapped: string;
  readonly kekSlotId: KekSlotId;
  readonly state: DekState;
  /** Epoch seconds. */
  readonly createdAt: number;
}

/**
 * Encryption-context key under which an envelope names its KEK slot id. Defined with the
 * binding (providers/support.ts), which lets it through as the library's own key.
 */
export { KEK_SLOT_CONTEXT_KEY } from '../providers/support.js';

export const META = {
  active: 'active',
  rotation: 'rotation',
  kdf: 'kdf',
  kekCheck: (slot: KekSlotId) => `kek-check.${slot}`,
} as const;

export function encodeDekRecord(record: DekRecord): Uint8Array {
  return new Uint8Array(Buffer.from(JSON.stringify({ v: 1, ...record }), 'utf8'));
}

/** @throws MalformedTokenError for anything that is not a DEK record. */
export function decodeDekRecord(bytes: Uint8Array, expectedId: string): DekRecord {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(Buffer.from(bytes).toString('utf8')) as Record<string, unknown>;
  } catch {
    throw new MalformedTokenError(`DEK record ${expectedId} is not JSON`);
  }
  const { v, id, alg, wrapped, kekSlotId, state, createdAt } = raw;
  if (
    v !== 1 ||
    typeof id !== 'string' ||
    typeof alg !== 'string' ||
    typeof wrapped !== 'string' ||
    typeof kekSlotId !== 'string' ||
    (state !== 'enabled' && state !== 'deactivated') ||
    typeof createdAt !== 'number'
  ) {
    throw new MalformedTokenError(`DEK record ${expectedId} is malformed`);
  }
  const record: DekRecord = {
    id: parseDekId(id),
    alg,
    wrapped,
    kekSlotId: parseKekSlotId(kekSlotId),
    state,
    createdAt,
  };
  if (record.id !== expectedId) throw new MalformedTokenError(`DEK record ${expectedId} names another id`);
  return record;
}
