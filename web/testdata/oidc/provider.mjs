// A real, certified OpenID Connect provider (npm oidc-provider) for Portcullis's browser
// and CLI login tests. It listens on 127.0.0.1 at an ephemeral port and prints
//   READY http://127.0.0.1:PORT
// once it serves. Its development login pages accept any password for the accounts below.
//
// Environment:
//   CONSOLE_REDIRECT  the console's redirect URI (http://HOST:PORT/auth/callback)
//   CONSOLE_SECRET    the console client's secret
import http from 'node:http';
import Provider from 'oidc-provider';

const accounts = {
  alice: { email: 'alice@example.com', groups: ['engineering'] },
  bob: { email: 'bob@example.com', groups: ['sre'] },
  carol: { email: 'carol@example.com', groups: ['security'] },
  dave: { email: 'dave@example.com', groups: ['engineering', 'oncall'] },
};

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: 'portcullis-console',
        client_secret: process.env.CONSOLE_SECRET,
        redirect_uris: [process.env.CONSOLE_REDIRECT],
        response_types: ['code'],
        grant_types: ['authorization_code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
      {
        // The CLI: a public native client on a loopback redirect (any port, RFC 8252).
        client_id: 'portcullis-cli',
        application_type: 'native',
        redirect_uris: ['http://127.0.0.1/callback'],
        response_types: ['code'],
        grant_types: ['authorization_code', 'urn:ietf:params:oauth:grant-type:device_code'],
        token_endpoint_auth_method: 'none',
      },
      {
        // A machine client: client-credentials access tokens in JWT form (RFC 9068) whose
        // audience is the console's client and which carry user claims, as some providers'
        // access tokens do. Portcullis must refuse them as bearer tokens: they are not ID tokens.
        client_id: 'portcullis-machine',
        client_secret: 'machine-secret',
        redirect_uris: [],
        response_types: [],
        grant_types: ['client_credentials'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    async findAccount(_ctx, id) {
      const a = accounts[id];
      if (!a) return undefined;
      return {
        accountId: id,
        async claims() {
          return { sub: id, preferred_username: id, email: a.email, email_verified: true, groups: a.groups };
        },
      };
    },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['preferred_username'],
      groups: ['groups'],
    },
    scopes: ['openid', 'email', 'profile', 'groups'],
    conformIdTokenClaims: false, // put the scope's claims in the ID token of the code flow
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: true },
      deviceFlow: { enabled: true },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: (_ctx, client) => (client.clientId === 'portcullis-machine' ? 'urn:portcullis:api' : undefined),
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({ audience: 'portcullis-console', scope: 'api', accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } }),
      },
    },
    extraTokenClaims: (_ctx, token) => (token.kind === 'ClientCredentials' ? { preferred_username: 'bob', email: 'bob@example.com', groups: ['sre'] } : undefined),
    cookies: { keys: ['portcullis-test-only-cookie-key'] },
    ttl: { IdToken: 3600, AccessToken: 3600, AuthorizationCode: 60, DeviceCode: 600, Interaction: 600, Session: 3600, Grant: 3600 },
  });
  provider.on('server_error', (_ctx, err) => console.error('server_error', err));
  server.on('request', provider.callback());
  console.log(`READY ${issuer}`);
});
process.on('SIGTERM', () => process.exit(0));
