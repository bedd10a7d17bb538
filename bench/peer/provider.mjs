// The benchmark's peer: node oidc-provider configured like the IdP's web client.
//
// RS256 ID tokens (a 2048-bit RSA key, like the IdP's), one confidential client authenticating with
// client_secret_basic, authorization code + PKCE S256, refresh tokens rotated on every use (the IdP
// rotates too), opaque access tokens. Storage is Redis (adapter below): the IdP keeps codes and
// access tokens in Redis and refresh tokens in PostgreSQL, so both pay round trips to their stores.
//
// Only for the benchmark: it listens on 127.0.0.1, and /_bench/mint creates authorization codes and
// refresh tokens directly (the peer has no login pages here), so that the token endpoint can be
// measured on both providers with the same load generator.
//
// Environment: PEER_PORT, PEER_CLIENT_SECRET, PEER_REDIRECT_URI, PEER_REDIS_URL, PEER_REDIS_PREFIX.
import crypto from 'node:crypto';
import http from 'node:http';

import Redis from 'ioredis';
import Provider from 'oidc-provider';

const port = Number(process.env.PEER_PORT || 3999);
const issuer = `http://127.0.0.1:${port}`;
const redirectUri = process.env.PEER_REDIRECT_URI || 'https://rp.example/callback';
const clientId = 'bench-peer';
const clientSecret = process.env.PEER_CLIENT_SECRET;
if (!clientSecret) {
  throw new Error('PEER_CLIENT_SECRET is required');
}

// Storage: oidc-provider's adapter interface on Redis, in the shape its documentation gives for
// production (docs "adapter" and example/adapters/redis.js; written here, not copied): one JSON string
// per model instance (a hash for the consumable ones, so that consume() only sets a field), expiry by
// Redis TTL, a list per grant that revokeByGrantId() deletes, writes in one MULTI. Like the IdP, each
// operation pays a round trip to its store.
const redis = new Redis(process.env.PEER_REDIS_URL || 'redis://127.0.0.1:6379/0',
  { keyPrefix: process.env.PEER_REDIS_PREFIX || 'oidc:', enableAutoPipelining: false });
const grantable = new Set(['AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode',
  'BackchannelAuthenticationRequest']);
const consumable = new Set(['AuthorizationCode', 'RefreshToken', 'DeviceCode', 'BackchannelAuthenticationRequest']);

class RedisAdapter {
  constructor(name) { this.name = name; }

  key(id) { return `${this.name}:${id}`; }

  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    const tx = redis.multi();
    if (consumable.has(this.name)) tx.hset(key, 'payload', JSON.stringify(payload));
    else tx.set(key, JSON.stringify(payload));
    if (expiresIn) tx.expire(key, expiresIn);
    if (grantable.has(this.name) && payload.grantId) {
      const grantKey = `grant:${payload.grantId}`;
      tx.rpush(grantKey, key);
      // The grant list lives as long as its longest-lived member (one TTL read, as documented).
      if (expiresIn > await redis.ttl(grantKey)) tx.expire(grantKey, expiresIn);
    }
    for (const [field, prefix] of [['userCode', 'userCode'], ['uid', 'uid']]) {
      if (payload[field]) tx.set(`${prefix}:${payload[field]}`, id, 'EX', expiresIn);
    }
    await tx.exec();
  }

  async find(id) {
    if (!id) return undefined;
    if (!consumable.has(this.name)) {
      const raw = await redis.get(this.key(id));
      return raw ? JSON.parse(raw) : undefined;
    }
    const { payload, ...fields } = await redis.hgetall(this.key(id));
    if (!payload) return undefined;
    const found = JSON.parse(payload);
    if (fields.consumed) found.consumed = Number(fields.consumed);
    return found;
  }

  async findByUserCode(userCode) { return this.find(await redis.get(`userCode:${userCode}`)); }

  async findByUid(uid) { return this.find(await redis.get(`uid:${uid}`)); }

  async consume(id) { await redis.hset(this.key(id), 'consumed', Math.floor(Date.now() / 1000)); }

  async destroy(id) { await redis.del(this.key(id)); }

  async revokeByGrantId(grantId) {
    const grantKey = `grant:${grantId}`;
    const members = await redis.lrange(grantKey, 0, -1);
    const tx = redis.multi();
    for (const member of members) tx.del(member);
    tx.del(grantKey);
    await tx.exec();
  }
}

const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'peer-rs256', alg: 'RS256', use: 'sig' };

const provider = new Provider(issuer, {
  adapter: RedisAdapter,
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
  const one = async (i) => {
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
      made.codes[i] = await code.save();
    } else {
      const token = new provider.RefreshToken({ ...common, gty: 'authorization_code', iiat: now, rotations: 0 });
      made.refresh_tokens[i - codes] = await token.save();
    }
  };
  // Batches of concurrent saves: the store is a network round trip away.
  for (let start = 0; start < codes + refresh; start += 200) {
    const batch = [];
    for (let i = start; i < Math.min(start + 200, codes + refresh); i += 1) batch.push(one(i));
    await Promise.all(batch);
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
