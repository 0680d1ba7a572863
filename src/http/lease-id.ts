/**
 * The `id` of a leased pop is its store lease token, base64url-encoded. A RedisStore token
 * names its schedule (`<lease>/<enc>`), so it may hold any character a task name or uid holds
 * ('/', spaces, '%', unicode); the id is safe in a URL path whether or not a client encodes it.
 */
export function leaseId(token: string): string {
  return Buffer.from(token, 'utf8').toString('base64url');
}

/** The lease token an id stands for. Anything that is not an id decodes to a token no store holds (lease lost). */
export function leaseToken(id: string): string {
  return Buffer.from(id, 'base64url').toString('utf8');
}
