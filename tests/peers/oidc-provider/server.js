// Browserless OAuth 2.1 / OIDC authorization server for Warden's tests, built on panva's oidc-provider.
// Adapted from /work/shared/peers/oidc-provider/server.js.
//
// Usage: node server.js [port]   (port 0 / omitted = pick a free port; binds 127.0.0.1 only)
// Prints one line "READY <issuer>" on stdout when listening.
//
// Env:
//   AT_TTL, RT_TTL   access / refresh token lifetimes in seconds (default 3600 / 86400)
//   CIMD=1           enable client ID metadata documents (draft-02) and let the provider fetch them
//                    from loopback (test only: it turns off oidc-provider's own special-use-IP guard
//                    for outgoing fetches); set NODE_EXTRA_CA_CERTS to the test HTTPS server's cert
//   WITHHOLD_SCOPES  JSON {"<user>": ["<scope>", ...]}: scopes the consent never grants that user (rejected,
//                    so the tokens come without them), e.g. {"uma": ["warden:admin"]}: a person who is no admin
//   CLIENTS          JSON list of pre-registered clients (oidc-provider client metadata), e.g.
//                    [{"client_id":"a","client_secret":"s","token_endpoint_auth_method":"client_secret_post",
//                      "redirect_uris":["http://127.0.0.1:1/cb"],"grant_types":["authorization_code","refresh_token"]}]
//
// Test endpoints (not OAuth):
//   GET /test/stats  {"token_requests": {"<grant_type>": n}, "by_client": {"<client_id>": {"<grant_type>": n}}}
//                    counts every token-endpoint request that reached grant handling, success or error.
//
// Always present: a confidential client "test-introspector" / "test-introspector-secret"
// (client_secret_basic) that may introspect any token, for assertions.
import http from 'node:http';
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const PORT = Number(process.argv[2] ?? process.env.PORT ?? 0);
const AT_TTL = Number(process.env.AT_TTL ?? 3600);
const RT_TTL = Number(process.env.RT_TTL ?? 86400);
const EXTRA_CLIENTS = JSON.parse(process.env.CLIENTS ?? '[]');
const CIMD = process.env.CIMD === '1';
const WITHHOLD = JSON.parse(process.env.WITHHOLD_SCOPES ?? '{}');

// one RSA signing key for ID tokens and JWT access tokens
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwks = { keys: [{ ...privateKey.export({ format: 'jwk' }), kid: 'test-key-1', use: 'sig', alg: 'RS256' }] };

const INTROSPECTOR = {
  client_id: 'test-introspector',
  client_secret: 'test-introspector-secret',
  token_endpoint_auth_method: 'client_secret_basic',
  redirect_uris: ['http://127.0.0.1:1/unused'],
  grant_types: ['authorization_code'],
};

const stats = { token_requests: {}, by_client: {} };
function countTokenRequest(ctx) {
  const grantType = String(ctx.oidc?.params?.grant_type ?? 'unknown');
  const clientId = String(ctx.oidc?.client?.clientId ?? ctx.oidc?.params?.client_id ?? 'unknown');
  stats.token_requests[grantType] = (stats.token_requests[grantType] ?? 0) + 1;
  const mine = (stats.by_client[clientId] ??= {});
  mine[grantType] = (mine[grantType] ?? 0) + 1;
}

const server = http.createServer();
server.listen(PORT, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;

  const provider = new Provider(issuer, {
    jwks,
    cookies: { keys: ['test-cookie-key-not-secret'] },
    clients: [INTROSPECTOR, ...EXTRA_CLIENTS],
    ...(CIMD ? { fetch: (url, options) => { delete options.dispatcher; return fetch(url, options); } } : {}),
    scopes: ['openid', 'offline_access', 'mcp:tools', 'mcp:admin', 'warden:admin'],
    claims: { openid: ['sub'], email: ['email'] },
    findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub, email: `${sub}@example.test` }) }),
    pkce: { required: () => true },                 // PKCE (S256 only is the v9 default) for every client
    // refresh token for any client allowed the refresh_token grant, even without offline_access/openid
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    rotateRefreshToken: true,                       // every refresh answers a new refresh token (RFC 9700 §4.14.2)
    ttl: { AccessToken: AT_TTL, RefreshToken: RT_TTL, Interaction: 600, Session: 86400, Grant: 86400 },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },           // replaced by the auto login/consent endpoint below
      registration: { enabled: true },                // RFC 7591 open DCR (no initial access token)
      clientIdMetadataDocument: CIMD ? { enabled: true, ack: 'draft-02' } : { enabled: false },
      clientCredentials: { enabled: true },           // grant_type=client_credentials (machine-to-machine)
      revocation: { enabled: true },                  // RFC 7009 at /token/revocation
      introspection: { enabled: true },               // RFC 7662 at /token/introspection (handy for asserts)
      resourceIndicators: {                           // RFC 8707 -> JWT (RFC 9068) access token with aud=resource
        enabled: true,
        defaultResource: async (ctx, client, oneOf) => oneOf,
        useGrantedResource: async () => true,         // token/refresh requests without resource= reuse the granted one
        getResourceServerInfo: async (ctx, resourceIndicator) => ({
          scope: 'mcp:tools mcp:admin warden:admin',
          audience: resourceIndicator,
          accessTokenTTL: AT_TTL,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
  });
  provider.on('grant.success', countTokenRequest);
  provider.on('grant.error', countTokenRequest);

  // Browserless interaction endpoint: auto-login + auto-consent.
  // login_hint=<user> picks the account (default "test-user"); login_hint=deny ends with access_denied.
  async function interaction(req, res) {
    const { prompt, params, session, grantId } = await provider.interactionDetails(req, res);
    let result;
    if (params.login_hint === 'deny') {
      result = { error: 'access_denied', error_description: 'test user denied the request' };
    } else if (prompt.name === 'login') {
      result = { login: { accountId: params.login_hint || 'test-user' } };
    } else if (prompt.name === 'consent') {
      const grant = grantId
        ? await provider.Grant.find(grantId)
        : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
      const d = prompt.details;
      const withheld = new Set(WITHHOLD[session.accountId] ?? []);
      const split = (scopes) => [scopes.filter((s) => !withheld.has(s)), scopes.filter((s) => withheld.has(s))];
      if (d.missingOIDCScope) {
        const [give, keep] = split(d.missingOIDCScope);
        if (give.length) grant.addOIDCScope(give.join(' '));
        if (keep.length) grant.rejectOIDCScope(keep.join(' '));
      }
      if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
      for (const [indicator, scopes] of Object.entries(d.missingResourceScopes ?? {})) {
        const [give, keep] = split(scopes);
        if (give.length) grant.addResourceScope(indicator, give.join(' '));
        if (keep.length) grant.rejectResourceScope(indicator, keep.join(' '));
      }
      result = { consent: { grantId: await grant.save() } };
    } else {
      result = { error: 'access_denied', error_description: `unsupported prompt ${prompt.name}` };
    }
    await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
  }

  const callback = provider.callback();
  server.on('request', (req, res) => {
    if (req.url.startsWith('/interaction/')) {
      interaction(req, res).catch((err) => {
        res.statusCode = 500;
        res.end(String(err));
      });
    } else if (req.method === 'GET' && req.url === '/test/stats') {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(stats));
    } else {
      callback(req, res);
    }
  });
  provider.on('server_error', (ctx, err) => console.error('server_error', err));
  console.log(`READY ${issuer}`);
});

for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => server.close(() => process.exit(0)));
