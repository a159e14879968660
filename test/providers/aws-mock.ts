/** What the two aws-sdk-client-mock test files share. */

/** An error shaped like an AWS SDK v3 service exception (`name`, `$metadata.httpStatusCode`). */
export function awsError(name: string, status = 400, message = 'm', extra: object = {}): Error {
  return Object.assign(new Error(message), { name, $metadata: { httpStatusCode: status }, ...extra });
}

/** Records the `abortSignal` of every `client.send` (the mock still answers the calls). */
export function recordAbortSignals(client: {
  send(command: never, options?: { abortSignal?: AbortSignal }): Promise<unknown>;
}): (AbortSignal | undefined)[] {
  const sent: (AbortSignal | undefined)[] = [];
  const send = client.send.bind(client);
  client.send = (command: never, options?: { abortSignal?: AbortSignal }) => {
    sent.push(options?.abortSignal);
    return send(command, options);
  };
  return sent;
}
