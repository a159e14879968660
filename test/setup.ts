import { Socket } from 'node:net';

// Network safety: cloud SDKs must never reach for instance metadata or default credentials here.
process.env.AWS_EC2_METADATA_DISABLED = 'true';
process.env.METADATA_SERVER_DETECTION = 'none';
// The AWS SDK's notice about its future Node 22 requirement is not a test failure.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

// And a guard: any TCP connection from a test to anything but loopback fails at once (a cloud
// metadata address such as 169.254.169.254, a real cloud endpoint, DNS-resolved names).
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1', '::ffff:127.0.0.1']);
const connect = Socket.prototype.connect;
Socket.prototype.connect = function guardedConnect(this: Socket, ...args: unknown[]) {
  // `net.connect()` passes its normalized arguments as one array.
  const first = Array.isArray(args[0]) ? args[0][0] : args[0];
  let host: unknown;
  let path: unknown;
  if (typeof first === 'object' && first !== null) {
    ({ host, path } = first as { host?: unknown; path?: unknown });
  } else if (typeof first === 'string' && Number.isNaN(Number(first))) {
    path = first; // a Unix socket path
  } else if (typeof args[1] === 'string') {
    host = args[1];
  }
  if (path === undefined && host !== undefined && !LOOPBACK.has(String(host))) {
    throw new Error(
      `test network guard: a test tried to connect to ${String(host)} (only loopback is allowed)`,
    );
  }
  return (connect as (...a: unknown[]) => Socket).apply(this, args);
} as typeof Socket.prototype.connect;
