import { MemoryStore } from '../../src/storage/memory.js';
import { runStoreConformance } from './conformance.js';

runStoreConformance('memory', async () => {
  const store = new MemoryStore();
  return {
    store,
    // One process, one map: "another client" is the same store.
    another: async () => store,
    corrupt: async (index) =>
      store.putRawForTesting(index, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16])),
    cleanup: async () => {},
  };
});
