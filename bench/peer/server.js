// Benchmark reference peer: node `oidc-provider` 8.8.x, single process,
// in-memory adapter, RS256 JWT access tokens via client_credentials.
import { createHash, generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const PORT = Number.parseInt(process.env.PORT || '3100', 10);
const HOST = '127.0.0.1';
const ISSUER = `http://${HOST}:${PORT}`;
// Resource indicator used for every client_credentials token (becomes the JWT `aud`).
const RESOURCE = 'urn:opentrusty:bench:api';
const TOKEN_TTL = 3600;

// Fresh RSA-2048 signing key per start, exported as a private JWK.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = privateKey.export({ format: 'jwk' });
// RFC 7638 thumbprint as kid.
const kid = createHash('sha256')
  .update(JSON.stringify({ e: jwk.e, kty: jwk.kty, n: jwk.n }))
  .digest('base64url');

const configuration = {
  jwks: { keys: [{ ...jwk, kid, alg: 'RS256', use: 'sig' }] },
  clients: [
    {
      client_id: 'bench',
      client_secret: 'bench-secret',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // No `resource` param needed: every request is defaulted to RESOURCE.
      defaultResource: () => RESOURCE,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'api',
        accessTokenTTL: TOKEN_TTL,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  ttl: {
    AccessToken: TOKEN_TTL,
    ClientCredentials: TOKEN_TTL,
  },
  clientBasedCORS: () => false,
  // Static cookie keys (cookies are unused by the client_credentials bench).
  cookies: { keys: ['opentrusty-bench-peer-cookie-key'] },
};

const provider = new Provider(ISSUER, configuration);

const server = createServer(provider.callback());
server.listen(PORT, HOST, () => {
  console.log(`ready ${ISSUER}`);
});

const shutdown = () => server.close(() => process.exit(0));
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
