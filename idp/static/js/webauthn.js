// Biometric activation (offer page) and sign-in (login page) with WebAuthn platform credentials.
// No inline script (CSP script-src 'self'); the CSRF token travels in the X-CSRFToken header.
(function () {
  "use strict";
  if (window.__idpWebauthn) { return; }  // the login button template may be included with another copy
  window.__idpWebauthn = true;

  var GENERIC_ERROR = "La biométrie n'a pas pu être utilisée. Merci de réessayer ou de vous connecter avec votre mot de passe.";

  function b64urlToBuffer(value) {
    var base64 = value.replace(/-/g, "+").replace(/_/g, "/");
    while (base64.length % 4) { base64 += "="; }
    var binary = atob(base64);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) { bytes[i] = binary.charCodeAt(i); }
    return bytes.buffer;
  }

  function bufferToB64url(buffer) {
    var bytes = new Uint8Array(buffer);
    var binary = "";
    for (var i = 0; i < bytes.length; i++) { binary += String.fromCharCode(bytes[i]); }
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    if (meta) { return meta.getAttribute("content"); }
    var input = document.querySelector('input[name="csrf_token"]');
    return input ? input.value : "";
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: {"Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": csrfToken()},
      body: JSON.stringify(body || {})
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok) {
          var error = new Error(data.error_description || GENERIC_ERROR);
          error.fromServer = true;
          throw error;
        }
        return data;
      });
    });
  }

  function descriptors(list) {
    return (list || []).map(function (d) {
      return {type: d.type, id: b64urlToBuffer(d.id), transports: d.transports};
    });
  }

  function creationOptions(json) {
    var o = json.publicKey;
    o.challenge = b64urlToBuffer(o.challenge);
    o.user.id = b64urlToBuffer(o.user.id);
    o.excludeCredentials = descriptors(o.excludeCredentials);
    return o;
  }

  function requestOptions(json) {
    var o = json.publicKey;
    o.challenge = b64urlToBuffer(o.challenge);
    o.allowCredentials = descriptors(o.allowCredentials);
    return o;
  }

  // The JSON form of a PublicKeyCredential that py_webauthn reads; ``response`` holds the ceremony's own fields.
  function credentialJSON(credential, response) {
    return {
      id: credential.id, rawId: bufferToB64url(credential.rawId), type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || undefined,
      response: response,
      clientExtensionResults: credential.getClientExtensionResults()
    };
  }

  function registrationJSON(credential) {
    var r = credential.response;
    return credentialJSON(credential, {
      clientDataJSON: bufferToB64url(r.clientDataJSON),
      attestationObject: bufferToB64url(r.attestationObject),
      transports: typeof r.getTransports === "function" ? r.getTransports() : []
    });
  }

  function assertionJSON(credential) {
    var r = credential.response;
    return credentialJSON(credential, {
      clientDataJSON: bufferToB64url(r.clientDataJSON),
      authenticatorData: bufferToB64url(r.authenticatorData),
      signature: bufferToB64url(r.signature),
      userHandle: r.userHandle ? bufferToB64url(r.userHandle) : undefined
    });
  }


  function showMessage(box, text) {
    if (!box) { return; }
    var slot = box.querySelector("[data-webauthn-message]");
    if (slot) { slot.textContent = text; }
    box.hidden = false;
  }

  function platformAuthenticator() {
    if (!window.PublicKeyCredential ||
        typeof PublicKeyCredential.isUserVerifyingPlatformAuthenticatorAvailable !== "function") {
      return Promise.resolve(false);
    }
    return PublicKeyCredential.isUserVerifyingPlatformAuthenticatorAvailable().catch(function () { return false; });
  }

  // One ceremony on a button click: options from the server, the authenticator, the verdict, then the
  // page the server names; on failure the button comes back with the server's (or a generic) message.
  function onCeremony(button, urls, ceremony, errorBox, fallbackMessage, onFailure) {
    button.addEventListener("click", function () {
      button.disabled = true;
      if (errorBox) { errorBox.hidden = true; }
      post(urls.optionsUrl).then(ceremony).then(function (credentialJSON) {
        return post(urls.verifyUrl, credentialJSON);
      }).then(function (data) {
        window.location.assign(data.redirect);
      }).catch(function (error) {
        button.disabled = false;
        showMessage(errorBox, error && error.fromServer ? error.message : fallbackMessage);
        if (onFailure) { onFailure(); }
      });
    });
  }

  // --- the offer: "Activer la biométrie" ----------------------------------------------------
  function setUpActivation(button) {
    var help = document.getElementById("webauthn-help");
    function cannotActivate() {
      // .fr-btn sets display, which beats [hidden]: hide the list item that holds the button.
      (button.closest("li") || button).hidden = true;
      if (help) { help.hidden = false; }
    }
    platformAuthenticator().then(function (available) { if (!available) { cannotActivate(); } });
    onCeremony(button, button.dataset, function (json) {
      return navigator.credentials.create({publicKey: creationOptions(json)}).then(registrationJSON);
    }, document.getElementById("webauthn-error"), "L'activation de la biométrie n'a pas abouti.", cannotActivate);
  }

  // --- the login page: "Se connecter avec la biométrie" -------------------------------------
  function setUpSignIn(container) {
    platformAuthenticator().then(function (available) { if (available) { container.hidden = false; } });
    onCeremony(document.getElementById("webauthn-login-button"), container.dataset, function (json) {
      return navigator.credentials.get({publicKey: requestOptions(json)}).then(assertionJSON);
    }, document.getElementById("webauthn-login-error"), GENERIC_ERROR, null);
  }

  // --- a security key (advisors' console): registration or sign-in named by data-webauthn-key ----------
  function setUpKey(button) {
    var create = button.dataset.webauthnKey === "create";
    onCeremony(button, button.dataset, function (json) {
      return create ? navigator.credentials.create({publicKey: creationOptions(json)}).then(registrationJSON)
        : navigator.credentials.get({publicKey: requestOptions(json)}).then(assertionJSON);
    }, document.getElementById("webauthn-key-error"),
    "La clé de sécurité n'a pas pu être utilisée. Merci de réessayer.", null);
  }

  function start() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-webauthn-key]"), setUpKey);
    var activate = document.getElementById("webauthn-activate");
    if (activate) { setUpActivation(activate); }
    var signIn = document.getElementById("webauthn-login");
    if (signIn) { setUpSignIn(signIn); }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
