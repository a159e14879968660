/** The test setup's network guard (test/setup.ts) refuses every connection but loopback. */
import { connect, createServer } from 'node:net';
import { expect, it } from 'vitest';

it('a connection to a cloud metadata address or any non-loopback host fails at once', () => {
  expect(() => connect({ host: '169.254.169.254', port: 80 })).toThrow(/network guard/);
  expect(() => connect(80, '8.8.8.8')).toThrow(/network guard/);
  expect(() => connect({ host: 'kms.us-east-1.amazonaws.com', port: 443 })).toThrow(/network guard/);
});

it('loopback connections still work', async () => {
  const server = createServer((socket) => socket.end('hi'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  const reply = await new Promise<string>((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    socket.setEncoding('utf8').on('data', resolve).on('error', reject);
  });
  expect(reply).toBe('hi');
  server.close();
});
