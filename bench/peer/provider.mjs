// The benchmark's peer: node oidc-provider configured like the IdP's web client.
//
// RS256 ID tokens (a 2048-bit RSA key, like the IdP's), one confidential client authenticating with
// client_secret_basic, authorization code + PKCE S256, refresh tokens rotated on every use (the IdP
// rotates too), opaque access tokens. Storage is oidc-provider's in-process memory adapter: the IdP
// keeps codes and access tokens in Redis and refresh tokens in PostgreSQL, so the peer pays no
// network round trip for its storage (the report says so next to the ratios).
//
// Only for the benchmark: it listens on 127.0.0.1, and /_bench/mint creates authorization codes and
// refresh tokens directly (the peer has no login pages here), so that the token endpoint can be
// measured on both providers with the same load generator.
//
// Environment: PEER_PORT, PEER_CLIENT_SECRET, PEER_REDIRECT_URI.
import crypto from 'node:crypto';
import http from 'node:http';

import Provider from 'oidc-provider';

const port = Number(process.env.PEER_PORT || 3999);
const issuer = `http://127.0.0.1:${port}`;
const redirectUri = process.env.PEER_REDIRECT_URI || 'https://rp.example/callback';
const clientId = 'bench-peer';
const clientSecret = process.env.PEER_CLIENT_SECRET;
if (!clientSecret) {
  throw new Error('PEER_CLIENT_SECRET is required');
}

// The oidc-provider adapter interface (lib/adapters/memory_adapter.js) on an unbounded Map; expiry is
// left to oidc-provider's own checks (the run is bounded in time and count).
const store = new Map();
class MapAdapter {
  constructor(name) { this.name = name; }

  key(id) { return `${this.name}:${id}`; }

  async upsert(id, payload) {
    store.set(this.key(id), payload);
    if (payload.grantId) {
      const grantKey = `grant:${payload.grantId}`;
      if (!store.has(grantKey)) store.set(grantKey, []);
      store.get(grantKey).push(this.key(id));
    }
    if (payload.userCode) store.set(`userCode:${payload.userCode}`, id);
    if (payload.uid) store.set(`uid:${payload.uid}`, id);
  }

  async find(id) { return store.get(this.key(id)); }

  async findByUserCode(userCode) { return this.find(store.get(`userCode:${userCode}`)); }

  async findByUid(uid) { return this.find(store.get(`uid:${uid}`)); }

  async consume(id) {
    const found = store.get(this.key(id));
    if (found) found.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) { store.delete(this.key(id)); }

  async revokeByGrantId(grantId) {
    for (const key of store.get(`grant:${grantId}`) || []) store.delete(key);
    store.delete(`grant:${grantId}`);
  }
}

const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'peer-rs256', alg: 'RS256', use: 'sig' };

const provider = new Provider(issuer, {
  adapter: MapAdapter,
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
    response_types: ['code'],
    redirect_uris: [redirectUri],
    id_token_signed_response_alg: 'RS256',
  }],
  jwks: { keys: [signingKey] },
  scopes: ['openid', 'email', 'offline_access'],
  claims: { openid: ['sub'], email: ['email', 'email_verified'] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    userinfo: { enabled: true },
  },
  pkce: { required: () => true },
  // Like the IdP: every refresh grant rotates the token (a reused one revokes the grant).
  rotateRefreshToken: true,
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  ttl: {
    AccessToken: 600,
    AuthorizationCode: 600,
    ClientCredentials: 600,
    IdToken: 600,
    RefreshToken: 30 * 24 * 3600,
    Grant: 30 * 24 * 3600,
    Session: 12 * 3600,
    Interaction: 1800,
  },
  findAccount: async (ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: id, email: `${id}@bench.example`, email_verified: true }),
  }),
});
provider.on('server_error', (ctx, err) => { console.error('server_error', err); });

function s256(verifier) {
  return crypto.createHash('sha256').update(verifier).digest('base64url');
}

// POST /_bench/mint?codes=N&refresh=M -> {code_verifier, codes: [...], refresh_tokens: [...]}
async function mint(url) {
  const codes = Math.min(Number(url.searchParams.get('codes') || 0), 200000);
  const refresh = Math.min(Number(url.searchParams.get('refresh') || 0), 10000);
  const client = await provider.Client.find(clientId);
  const verifier = crypto.randomBytes(32).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const made = { code_verifier: verifier, codes: [], refresh_tokens: [] };
  for (let i = 0; i < codes + refresh; i += 1) {
    const accountId = `account-${i % 1000}`;
    const grant = new provider.Grant({ accountId, clientId });
    grant.addOIDCScope('openid email offline_access');
    const grantId = await grant.save();
    const common = {
      accountId, grantId, client, authTime: now, acr: 'eidas2', amr: ['pwd', 'mail', 'mfa'],
      scope: 'openid email offline_access', expiresWithSession: false,
    };
    if (i < codes) {
      const code = new provider.AuthorizationCode({
        ...common, redirectUri, codeChallenge: s256(verifier), codeChallengeMethod: 'S256', nonce: `n${i}`,
      });
      made.codes.push(await code.save());
    } else {
      const token = new provider.RefreshToken({ ...common, gty: 'authorization_code', iiat: now, rotations: 0 });
      made.refresh_tokens.push(await token.save());
    }
  }
  return made;
}

const callback = provider.callback();
const server = http.createServer((req, res) => {
  const url = new URL(req.url, issuer);
  if (url.pathname === '/_bench/mint' && req.method === 'POST') {
    mint(url).then((made) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(made));
    }, (err) => {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(String(err && err.stack));
    });
    return;
  }
  if (url.pathname === '/_bench/health') {
    res.writeHead(200);
    res.end('ok');
    return;
  }
  callback(req, res);
});
server.keepAliveTimeout = 5000;
server.listen(port, '127.0.0.1', () => { console.log(`peer listening on ${issuer}`); });
