/**
 * The Lua scripts of the Redis store. Each touches exactly one key (`KEYS[1]`), so each is legal
 * in a Redis Cluster. Run with EVALSHA, loaded with EVAL when the server answers NOSCRIPT.
 *
 * @module
 */
import { createHash } from 'node:crypto';
import { KmsBlobField, KmsBlobLimits } from '../envelope/kms-blob.js';
import { MAX_RECORD_BYTES } from './record-id.js';

/** A script and its SHA1, for EVALSHA. */
export interface RedisScript {
  readonly source: string;
  readonly sha: string;
}

function script(source: string): RedisScript {
  return { source, sha: createHash('sha1').update(source).digest('hex') };
}

/** A reply of {@link GET_ENVELOPE} and {@link GET_RECORD}: the value is over the limit. */
export const TOO_LARGE = -1;

const LIMIT = KmsBlobLimits.maxEnvelopeBytes;

/**
 * The stored value, or nil, or {@link TOO_LARGE} without sending it: STRLEN first, so a value
 * over the envelope limit planted by a store writer never crosses the network.
 */
export const GET_ENVELOPE = script(`if redis.call('STRLEN', KEYS[1]) > ${LIMIT} then return ${TOO_LARGE} end
return redis.call('GET', KEYS[1])`);

/** One record (ARGV[1] is its id), nil, or {@link TOO_LARGE} (HSTRLEN first). */
export const GET_RECORD =
  script(`if redis.call('HSTRLEN', KEYS[1], ARGV[1]) > ${MAX_RECORD_BYTES} then return ${TOO_LARGE} end
return redis.call('HGET', KEYS[1], ARGV[1])`);

/** Every record as HGETALL's flat id/value list, or {@link TOO_LARGE} if any value is over the limit. */
export const LIST_RECORDS = script(`local all = redis.call('HGETALL', KEYS[1])
for i = 2, #all, 2 do
  if #all[i] > ${MAX_RECORD_BYTES} then return ${TOO_LARGE} end
end
return all`);

/** The CRC32C (Castagnoli, reflected 0x82F63B78) table, as signed 32-bit numbers for Lua's `bit`. */
function crc32cTable(): number[] {
  const table: number[] = [];
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    table.push(c | 0);
  }
  return table;
}

const VERSION_ENTRY = 4 + 2 * KmsBlobField.version;
const INDEX_NAME_ENTRY = 4 + 2 * KmsBlobField.indexName;
const CREATION_ID_ENTRY = 4 + 2 * KmsBlobField.creationId;

/**
 * Compare-and-set. ARGV: expected version, the new stored bytes, the index name, and optionally
 * the expected creation id (empty: an envelope without one).
 *
 * The stored value is checked as far as the comparison needs before it is trusted: at most the
 * envelope limit, its CRC32C trailer right, file identifier `KMSB`, root offset and vtable inside
 * the buffer, `index_name` equal to the index. Then `version` (a u32) and `creation_id` (a
 * `[ubyte]` vector) are read with bounds checks. A value that fails is reported, never compared.
 *
 * Replies: 'OK' (written), '' (no envelope), 'MALFORMED <size|checksum|structure|index>', the
 * version found (a version conflict), or 'RECREATED <version>' (the version matched, the creation
 * id did not).
 */
export const COMPARE_AND_SET = script(`local s = redis.call('GET', KEYS[1])
if not s then return '' end
if #s > ${LIMIT} or #s < 16 then return 'MALFORMED size' end
local n = #s - 4
local function u32(p) local a, b, c, d = string.byte(s, p + 1, p + 4) return a + b * 256 + c * 65536 + d * 16777216 end
local function u16(p) local a, b = string.byte(s, p + 1, p + 2) return a + b * 256 end
local T = {${crc32cTable().join(',')}}
local bxor, byte = bit.bxor, string.byte
-- Table-driven CRC32C with one bit call per byte: x is the state already xored with the next
-- byte, and xor is associative, so each step is bxor(state >> 8, T[state & 255], next byte).
-- Bit results are signed 32-bit: normalised before the arithmetic shift.
local x = bxor(4294967295, byte(s, 1))
local i = 2
while i <= n do
  local last = math.min(i + 63, n)
  local bytes = {byte(s, i, last)}
  for j = 1, #bytes do
    if x < 0 then x = x + 4294967296 end
    local lo = x % 256
    x = bxor((x - lo) / 256, T[lo + 1], bytes[j])
  end
  i = last + 1
end
if x < 0 then x = x + 4294967296 end
local lo = x % 256
local crc = bxor((x - lo) / 256, T[lo + 1])
crc = bit.bnot(crc)
if crc < 0 then crc = crc + 4294967296 end
if crc ~= u32(n) then return 'MALFORMED checksum' end
if string.sub(s, 5, 8) ~= 'KMSB' then return 'MALFORMED structure' end
local root = u32(0)
if root < 8 or root + 4 > n then return 'MALFORMED structure' end
local soff = u32(root)
if soff >= 2147483648 then soff = soff - 4294967296 end
local vt = root - soff
if vt < 0 or vt + 4 > n then return 'MALFORMED structure' end
local vtsize = u16(vt)
if vtsize < 4 or vt + vtsize > n then return 'MALFORMED structure' end
local function field(entry) if vtsize < entry + 2 then return 0 end return u16(vt + entry) end
local function vector(entry)
  local off = field(entry)
  if off == 0 then return nil end
  local p = root + off
  if p + 4 > n then return false end
  local v = p + u32(p)
  if v + 4 > n then return false end
  local len = u32(v)
  if v + 4 + len > n then return false end
  return string.sub(s, v + 5, v + 4 + len)
end
local name = vector(${INDEX_NAME_ENTRY})
if not name or name ~= ARGV[3] then return 'MALFORMED index' end
local version = 0
local off = field(${VERSION_ENTRY})
if off ~= 0 then
  if root + off + 4 > n then return 'MALFORMED structure' end
  version = u32(root + off)
end
if version ~= tonumber(ARGV[1]) then return tostring(version) end
if #ARGV >= 4 then
  local cid = vector(${CREATION_ID_ENTRY})
  if cid == false then return 'MALFORMED structure' end
  if (cid or '') ~= ARGV[4] then return 'RECREATED ' .. tostring(version) end
end
redis.call('SET', KEYS[1], ARGV[2])
return 'OK'`);

/**
 * Deletes KEYS[1] only if it still holds ARGV[1] (migrate-store: an old key changed since it was
 * copied is left for the next run to report). Replies 1 if deleted, 0 if not.
 */
export const DELETE_IF_EQUAL =
  script(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`);

/**
 * Removes from hash KEYS[1] each field (ARGV id, value pairs) that still holds that value, and
 * the hash when nothing else is left. Replies the number of fields that remain.
 */
export const HDEL_IF_EQUAL = script(`for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then redis.call('HDEL', KEYS[1], ARGV[i]) end
end
return redis.call('HLEN', KEYS[1])`);
