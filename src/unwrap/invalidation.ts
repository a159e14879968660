/**
 * Cross-instance invalidation: a feed that tells a client when another instance (or anyone) changed
 * an index's envelope in the shared store, so the client drops its cached KEK at once instead of
 * serving it until the cache TTL runs out.
 *
 * A feed is an optimisation of freshness, never a security boundary: a missed message can only
 * leave a KEK cached until its TTL, and the feed says when messages may have been missed
 * ({@link InvalidationListener.lost}), upon which the client drops every cached KEK.
 *
 * @module
 */

/** What a feed tells the client. */
export interface InvalidationListener {
  /** The envelope of `index` changed (written, rotated, deleted). */
  changed(index: string): void;
  /**
   * Changes may have been missed (the connection dropped, a failover, the feed re-armed, the
   * store was flushed): the client drops every cached KEK. `reason` is for logs.
   */
  lost(reason: string): void;
}

/**
 * A source of invalidations for one store: `redisInvalidationFeed` (server-assisted client-side
 * caching over Redis), or your own (a message bus, Postgres `LISTEN`).
 */
export interface InvalidationFeed {
  /**
   * Starts delivering to `listener`; resolves once changes made from now on will be delivered.
   * Called once by the client. A feed that cannot start rejects (the client then relies on
   * its TTL and reports the error from {@link KmsEnvelopeClient.invalidationReady}).
   */
  start(listener: InvalidationListener): Promise<void>;
  /** Stops and releases the feed's connections. */
  close(): Promise<void>;
}
