// A relying party set up the way FranceConnect's core (france-connect/sources, core-fcp) calls an identity
// provider, on node `openid-client` 6: client_secret_post, no PKCE, prompt=login, acr_values, FC's scopes,
// 64-hex state and nonce; for FranceConnect+ (cmd.decryption_jwk) ES256-signed ID token and userinfo,
// both encrypted (JWE) to FC+'s key. The identity is then checked with FC's format rules (its identity DTO:
// class-validator) in `identityErrors`. Input: one JSON command in argv[2]; output: one JSON line.
// `allowInsecureRequests` only because the test issuer is served over http on 127.0.0.1.
import { randomBytes, webcrypto } from 'node:crypto';
import * as client from 'openid-client';

const cmd = JSON.parse(process.argv[2]);
const COG_FRANCE = '99100';

async function configure() {
  const metadata = {};
  if (cmd.signing_alg) {
    metadata.id_token_signed_response_alg = cmd.signing_alg;
    metadata.userinfo_signed_response_alg = cmd.signing_alg;
  }
  const config = await client.discovery(new URL(cmd.issuer), cmd.client_id, metadata,
    client.ClientSecretPost(cmd.client_secret), { execute: [client.allowInsecureRequests] });
  if (cmd.decryption_jwk) {
    const jwk = cmd.decryption_jwk;
    const algorithm = jwk.kty === 'RSA' ? { name: 'RSA-OAEP', hash: 'SHA-256' } : { name: 'ECDH', namedCurve: jwk.crv };
    const usages = jwk.kty === 'RSA' ? ['decrypt'] : ['deriveBits'];
    const key = await webcrypto.subtle.importKey('jwk', jwk, algorithm, false, usages);
    client.enableDecryptingResponses(config, ['A256GCM'], { key, kid: jwk.kid, alg: cmd.encryption_alg });
  }
  return config;
}

function start(config) {
  // FC: state and nonce are 32 random bytes in hex; no code_challenge.
  const state = randomBytes(32).toString('hex');
  const nonce = randomBytes(32).toString('hex');
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: cmd.redirect_uri, scope: cmd.scope, acr_values: cmd.acr_values, prompt: 'login', state, nonce,
  });
  return { url: url.href, state, nonce };
}

function identityErrors(identity) {
  // FC's rules for an identity provider's answer (given_name: all first names; family_name: birth name).
  const errors = [];
  const text = (name) => typeof identity[name] === 'string' && identity[name].length >= 1 && identity[name].length <= 256;
  for (const name of ['given_name', 'family_name']) if (!text(name)) errors.push(name);
  const date = /^(\d{4})-(\d{2})-(\d{2})$/.exec(identity.birthdate || '');
  const [month, day] = date ? [Number(date[2]), Number(date[3])] : [-1, -1];
  // "présumé né": an unknown day is 00, an unknown month 00 with day 00 (YYYY-MM-00, YYYY-00-00).
  if (!date || month > 12 || day > 31 || (month === 0 && day !== 0)) errors.push('birthdate');
  if (!['male', 'female'].includes(identity.gender)) errors.push('gender');
  if (!/^99\d{3}$/.test(identity.birthcountry || '')) errors.push('birthcountry');
  const commune = /^(\d{5}|2[AB]\d{3})$/.test(identity.birthplace || '');
  if (identity.birthcountry === COG_FRANCE ? !commune : ![undefined, ''].includes(identity.birthplace)) {
    errors.push('birthplace');
  }
  if ('email' in identity && !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(identity.email)) errors.push('email');
  if ('preferred_username' in identity && !text('preferred_username')) errors.push('preferred_username');
  return errors;
}

async function finish(config) {
  const tokens = await client.authorizationCodeGrant(config, new URL(cmd.callback_url), {
    expectedState: cmd.state, expectedNonce: cmd.nonce, idTokenExpected: true,
  });
  const claims = tokens.claims();
  if (!cmd.acr_values.split(' ').includes(claims.acr)) throw new Error(`acr ${claims.acr} not requested`);
  const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
  // FC+: the signed ID token and userinfo JWS found inside the JWEs openid-client decrypted.
  const signedIdToken = client.getDecryptedResponses(tokens)?.id_token?.token_endpoint;
  const signedUserinfo = client.getDecryptedResponses(userinfo);
  const endSession = client.buildEndSessionUrl(config, {
    // RP-Initiated Logout §2: the signed ID token (decrypted from the JWE for FC+), as FC sends it.
    id_token_hint: signedIdToken ?? tokens.id_token, state: randomBytes(32).toString('hex'),
    post_logout_redirect_uri: cmd.post_logout_redirect_uri,
  });
  return { claims, userinfo, identity_errors: identityErrors(userinfo), scope: tokens.scope,
    refresh_token: Boolean(tokens.refresh_token), id_token_parts: tokens.id_token.split('.').length,
    signed_id_token_parts: signedIdToken?.split('.').length, userinfo_was_encrypted: Boolean(signedUserinfo),
    signed_userinfo_alg: signedUserinfo ? JSON.parse(Buffer.from(signedUserinfo.split('.')[0], 'base64url')).alg : null,
    end_session_url: endSession.href };
}

try {
  const config = await configure();
  const out = cmd.step === 'start' ? start(config) : await finish(config);
  process.stdout.write(JSON.stringify(out) + '\n');
} catch (err) {
  process.stdout.write(JSON.stringify({ failure: String(err), code: err.code, error: err.error,
    cause: err.cause ? String(err.cause) : undefined }) + '\n');
  process.exitCode = 1;
}
