// Loaded into the MCP conformance suite with NODE_OPTIONS="--import <this file>".
// The suite cannot send headers, and our /mcp endpoint wants an Entra bearer
// token. This wraps globalThis.fetch (which the MCP SDK's HTTP client uses)
// and adds "Authorization: Bearer $CONFORMANCE_TOKEN" to requests whose origin
// is CONFORMANCE_URL's, and to nothing else, so the token never leaves for
// another host. Requests the suite makes through undici directly (the
// dns-rebinding-protection scenario) bypass fetch and stay unauthenticated.

const token = process.env.CONFORMANCE_TOKEN;
const target = process.env.CONFORMANCE_URL;

if (token && target) {
  const origin = new URL(target).origin;
  const realFetch = globalThis.fetch;

  globalThis.fetch = function fetchWithBearer(input, init) {
    const url = input instanceof Request ? input.url : String(input);
    let sameOrigin = false;
    try {
      sameOrigin = new URL(url).origin === origin;
    } catch {
      // Not an absolute URL: leave the request alone.
    }
    if (!sameOrigin) {
      return realFetch(input, init);
    }
    const headers = new Headers(init?.headers ?? (input instanceof Request ? input.headers : undefined));
    if (!headers.has('authorization')) {
      headers.set('authorization', `Bearer ${token}`);
    }
    return realFetch(input, { ...init, headers });
  };
}
