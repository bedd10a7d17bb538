// A strict, independent relying party for the end-to-end tests: node `openid-client` 6 (panva),
// driven step by step from pytest. Input: one JSON command in argv[2]; output: one JSON line.
// `allowInsecureRequests` only because the test issuer is served over http on 127.0.0.1.
import * as client from 'openid-client';

const cmd = JSON.parse(process.argv[2]);

function auth() {
  if (cmd.auth === 'post') return client.ClientSecretPost(cmd.client_secret);
  if (cmd.auth === 'basic') return client.ClientSecretBasic(cmd.client_secret);
  return client.None();
}

async function configure() {
  return client.discovery(new URL(cmd.issuer), cmd.client_id, {}, auth(), {
    execute: [client.allowInsecureRequests],
  });
}

async function start(config) {
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: cmd.redirect_uri,
    scope: cmd.scope,
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
    ...(cmd.extra || {}),
  });
  return { url: url.href, verifier, state, nonce };
}

async function finish(config) {
  const tokens = await client.authorizationCodeGrant(config, new URL(cmd.callback_url), {
    pkceCodeVerifier: cmd.verifier,
    expectedState: cmd.state,
    expectedNonce: cmd.nonce,
    idTokenExpected: true,
    ...(cmd.max_age ? { maxAge: cmd.max_age } : {}),
  });
  const claims = tokens.claims();
  const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
  const result = { claims, userinfo, scope: tokens.scope };
  if (tokens.refresh_token) {
    const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
    result.refreshed_sub = refreshed.claims()?.sub;
    result.rotated = refreshed.refresh_token !== tokens.refresh_token;
    await client.tokenRevocation(config, refreshed.refresh_token);
    try {
      await client.refreshTokenGrant(config, refreshed.refresh_token);
      result.after_revocation = 'accepted';
    } catch (err) {
      result.after_revocation = err.error || err.code || String(err);
    }
  }
  result.end_session_url = client.buildEndSessionUrl(config, {
    id_token_hint: tokens.id_token,
    post_logout_redirect_uri: cmd.post_logout_redirect_uri,
    state: 'fin-de-session',
  }).href;
  return result;
}

try {
  const config = await configure();
  const out = cmd.step === 'start' ? await start(config) : await finish(config);
  process.stdout.write(JSON.stringify(out) + '\n');
} catch (err) {
  process.stdout.write(JSON.stringify({ failure: String(err), code: err.code, error: err.error,
    cause: err.cause ? String(err.cause) : undefined }) + '\n');
  process.exitCode = 1;
}
