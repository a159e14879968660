/**
 * The worker pool of provider `pkcs11`: a few `worker_threads` Workers, each owning one pkcs11js
 * handle and one session (see `worker.ts`), a queue of requests, and the deadline of each request
 * kept on the main thread. A request whose deadline passes is answered `DeadlineExceededError` at
 * once; its worker stays busy until the token answers, and that late answer is wiped and dropped.
 *
 * The module's `C_Initialize` / `C_Finalize` are per process, not per handle: every pool of a
 * process that loads the same module shares one {@link ModuleUse} count, and the pool that closes
 * last finalises the module, and only when one of the process's pools initialised it (an
 * application that initialised it itself keeps it).
 *
 * @module
 */
import { Worker } from 'node:worker_threads';
import { DeadlineExceededError, type ErrorContext, ProviderUnavailableError } from '../../src/errors.js';
import {
  type Pkcs11InjectedFault,
  type Pkcs11Operation,
  type Pkcs11WorkerData,
  type Pkcs11WorkerFailure,
  type Pkcs11WorkerRequest,
  type Pkcs11WorkerResponse,
  type Pkcs11WorkerStart,
  pkcs11WorkerMain,
} from './worker.js';

/** A successful answer of the token. */
export interface Pkcs11Answer {
  /** The output bytes (the caller wipes them). */
  readonly data: Buffer;
  readonly tokenLabel: string;
  readonly gcm: boolean;
  readonly wrapPad: boolean;
}

/** What the pool resolves to: an answer, or the worker's description of a failure. */
export type Pkcs11Outcome =
  | { readonly ok: true; readonly answer: Pkcs11Answer }
  | { readonly ok: false; readonly failure: Pkcs11WorkerFailure };

/** One request to the pool. */
export interface Pkcs11Request {
  readonly op: Pkcs11Operation;
  /** Input bytes; copied into a transferred buffer (the caller still owns and wipes its own). */
  readonly data: Uint8Array;
  readonly aad?: Uint8Array | undefined;
  readonly expectTokenLabel?: string | undefined;
  readonly fault?: Pkcs11InjectedFault | undefined;
  readonly signal?: AbortSignal | undefined;
  readonly where: ErrorContext;
}

interface Pending {
  readonly id: number;
  readonly request: Pkcs11Request;
  readonly resolve: (outcome: Pkcs11Outcome) => void;
  readonly reject: (err: unknown) => void;
  settled: boolean;
  onAbort?: () => void;
}

interface Member {
  readonly worker: Worker;
  busy: Pending | undefined;
  dead: boolean;
}

/** How many pools of this process use a module, and whether one of them initialised it. */
interface ModuleUse {
  users: number;
  initializedByUs: boolean;
  /** Closing pools' workers of the module, until they have exited (their sessions closed). */
  readonly stopping: Set<Promise<void>>;
  /** A closed pool left a worker inside a token call: the module is never finalised then. */
  leftStuck: boolean;
}
const moduleUses = new Map<string, ModuleUse>();

/**
 * Per module, one lock word shared by every worker of the process (a SharedArrayBuffer in each
 * worker's data): C_Initialize, finding the token, opening and logging in a session, and
 * C_Finalize run under it, one thread at a time. PKCS#11 leaves concurrent initialisation to the
 * application, and SoftHSM2 answers CKR_GENERAL_ERROR or crashes the process when workers
 * starting together call C_Initialize and C_GetTokenInfo at once.
 */
const setupLocks = new Map<string, SharedArrayBuffer>();
function setupLockOf(module: string): SharedArrayBuffer {
  let lock = setupLocks.get(module);
  if (lock === undefined) {
    lock = new SharedArrayBuffer(4);
    setupLocks.set(module, lock);
  }
  return lock;
}

/** The worker's source: its function, called; `__name` in case a transpiler kept names. */
const WORKER_SOURCE = `const __name = (f) => f;\n(${pkcs11WorkerMain.toString()})();`;

/** How long {@link Pkcs11Pool.close} waits for a worker stuck in a token call. */
const CLOSE_WAIT_MS = 2000;

/** A pool of PKCS#11 worker threads for one slot. */
export class Pkcs11Pool {
  readonly #data: Pkcs11WorkerData;
  readonly #size: number;
  readonly #pin: () => ArrayBuffer;
  readonly #members: Member[] = [];
  readonly #queue: Pending[] = [];
  readonly #use: ModuleUse;
  #nextId = 1;
  #closed = false;

  /**
   * @param pin returns a fresh copy of the PIN for a new worker (transferred to it, so the copy
   * leaves this thread).
   */
  constructor(data: Pkcs11WorkerData, size: number, pin: () => ArrayBuffer) {
    this.#data = data;
    this.#size = size;
    this.#pin = pin;
    let use = moduleUses.get(data.module);
    if (use === undefined) {
      use = { users: 0, initializedByUs: false, stopping: new Set(), leftStuck: false };
      moduleUses.set(data.module, use);
    }
    use.users++;
    this.#use = use;
  }

  /** Runs one operation on an idle worker (or queues it); honours the request's signal. */
  run(request: Pkcs11Request): Promise<Pkcs11Outcome> {
    if (this.#closed) {
      return Promise.reject(new ProviderUnavailableError('the pkcs11 provider was closed', request.where));
    }
    return new Promise<Pkcs11Outcome>((resolve, reject) => {
      const pending: Pending = { id: this.#nextId++, request, resolve, reject, settled: false };
      const signal = request.signal;
      if (signal !== undefined) {
        if (signal.aborted) {
          reject(new DeadlineExceededError('the PKCS#11 call was aborted (deadline)', request.where));
          return;
        }
        pending.onAbort = () => {
          const queued = this.#queue.indexOf(pending);
          if (queued >= 0) this.#queue.splice(queued, 1);
          this.#settle(pending, () =>
            reject(
              new DeadlineExceededError(
                queued >= 0
                  ? 'the PKCS#11 call was aborted (deadline) while every session was busy'
                  : 'the token did not answer within the deadline',
                request.where,
              ),
            ),
          );
        };
        signal.addEventListener('abort', pending.onAbort, { once: true });
      }
      this.#queue.push(pending);
      this.#dispatch();
    });
  }

  /**
   * Stops the workers (closing their sessions); the last pool of the process that uses the module
   * finalises it (`C_Finalize`) when this process initialised it. Waits at most about 2 s for a
   * worker stuck in a token call, which is then left to end by itself (unreferenced).
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const pending of this.#queue.splice(0)) {
      this.#settle(pending, () =>
        pending.reject(new ProviderUnavailableError('the pkcs11 provider was closed', pending.request.where)),
      );
    }
    this.#use.users--;
    const last = this.#use.users === 0;
    const members = this.#members.filter((m) => !m.dead);
    const stuck = members.filter((m) => m.busy !== undefined);
    const idle = members.filter((m) => m.busy === undefined);
    // C_Finalize while another thread is inside a call is undefined behaviour (SoftHSM2 can
    // crash the process): finalise only from the last pool of the module, from its last worker,
    // once every other worker of every pool of the module has exited, and never after a pool left
    // a worker stuck in a call.
    const use = this.#use;
    if (stuck.length > 0) use.leftStuck = true;
    const finalizer = last && use.initializedByUs ? idle.pop() : undefined;
    const stopped = Promise.all(idle.map((m) => this.#stop(m, false))).then(() => undefined);
    use.stopping.add(stopped);
    await stopped;
    use.stopping.delete(stopped);
    if (finalizer !== undefined) {
      await Promise.all([...use.stopping]); // other pools closing at the same time
      // A pool made meanwhile shares the module's initialisation: it finalises when it closes.
      const finalize = use.users === 0 && !use.leftStuck;
      await this.#stop(finalizer, finalize);
      if (finalize) use.initializedByUs = false;
    }
    for (const m of stuck) {
      m.worker.unref();
      void m.worker.terminate().catch(() => undefined);
    }
    if (last && use.users === 0 && moduleUses.get(this.#data.module) === use)
      moduleUses.delete(this.#data.module);
  }

  #stop(member: Member, finalize: boolean): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        void member.worker.terminate().finally(resolve);
      }, CLOSE_WAIT_MS);
      timer.unref();
      member.worker.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      member.dead = true;
      // Referenced until it exits: an idle worker is unreferenced, and a process with nothing
      // else to do would otherwise end before close() resolves (a script's last `await`).
      member.worker.ref();
      member.worker.postMessage({ type: 'close', finalize } satisfies Pkcs11WorkerRequest);
    });
  }

  #settle(pending: Pending, finish: () => void): void {
    if (pending.settled) return;
    pending.settled = true;
    if (pending.onAbort !== undefined) pending.request.signal?.removeEventListener('abort', pending.onAbort);
    finish();
  }

  #dispatch(): void {
    while (this.#queue.length > 0) {
      const member = this.#members.find((m) => !m.dead && m.busy === undefined) ?? this.#spawn();
      if (member === undefined) return;
      const pending = this.#queue.shift()!;
      member.busy = pending;
      member.worker.ref();
      const { request } = pending;
      const data = new ArrayBuffer(request.data.length);
      new Uint8Array(data).set(request.data);
      member.worker.postMessage(
        {
          type: 'op',
          id: pending.id,
          op: request.op,
          data,
          aad: request.aad === undefined ? undefined : new Uint8Array(request.aad),
          expectTokenLabel: request.expectTokenLabel,
          fault: request.fault,
        } satisfies Pkcs11WorkerRequest,
        [data],
      );
    }
  }

  /** A new worker when the pool is below its size, else `undefined` (every worker busy). */
  #spawn(): Member | undefined {
    const alive = this.#members.filter((m) => !m.dead);
    if (alive.length >= this.#size) return undefined;
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { ...this.#data, setupLock: setupLockOf(this.#data.module) } satisfies Pkcs11WorkerStart,
    });
    const member: Member = { worker, busy: undefined, dead: false };
    const pin = this.#pin();
    worker.postMessage({ type: 'pin', pin } satisfies Pkcs11WorkerRequest, [pin]);
    worker.on('message', (message: Pkcs11WorkerResponse) => this.#onMessage(member, message));
    const lost = (why: string) => {
      if (member.dead && member.busy === undefined) return;
      member.dead = true;
      const pending = member.busy;
      member.busy = undefined;
      if (pending !== undefined) {
        this.#settle(pending, () =>
          pending.reject(new ProviderUnavailableError(`the PKCS#11 worker ${why}`, pending.request.where)),
        );
      }
      const index = this.#members.indexOf(member);
      if (index >= 0) this.#members.splice(index, 1);
      if (!this.#closed) this.#dispatch();
    };
    // The error of a worker is not kept as a cause: it is of the worker's code, not of the token.
    worker.on('error', () => lost('failed'));
    worker.on('exit', () => lost('stopped'));
    worker.unref();
    this.#members.push(member);
    return member;
  }

  #onMessage(member: Member, message: Pkcs11WorkerResponse): void {
    if (message.type !== 'result') return;
    const pending = member.busy;
    member.busy = undefined;
    member.worker.unref();
    if (message.initializedHere) this.#use.initializedByUs = true;
    const data = message.ok ? Buffer.from(message.data) : undefined;
    if (pending === undefined || pending.id !== message.id || pending.settled) {
      // A late answer (the deadline passed): nobody waits for it any more.
      data?.fill(0);
    } else if (message.ok) {
      this.#settle(pending, () =>
        pending.resolve({
          ok: true,
          answer: { data: data!, tokenLabel: message.tokenLabel, gcm: message.gcm, wrapPad: message.wrapPad },
        }),
      );
    } else {
      this.#settle(pending, () => pending.resolve({ ok: false, failure: message.failure }));
    }
    if (!this.#closed) this.#dispatch();
  }
}
