// Security keys (WebAuthn): asks the server for a challenge, lets the browser talk to the key, and puts the
// key's answer into the form, which is then submitted as usual. Binary fields travel as base64url.
(function () {
  "use strict";

  function toBytes(value) {
    var text = value.replace(/-/g, "+").replace(/_/g, "/");
    while (text.length % 4) text += "=";
    var raw = atob(text);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return bytes.buffer;
  }

  function toText(buffer) {
    if (!buffer) return null;
    var bytes = new Uint8Array(buffer);
    var raw = "";
    for (var i = 0; i < bytes.length; i++) raw += String.fromCharCode(bytes[i]);
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function listed(descriptors) {
    return (descriptors || []).map(function (d) { return Object.assign({}, d, { id: toBytes(d.id) }); });
  }

  function credentialJSON(credential) {
    var response = credential.response;
    var json = {
      id: credential.id,
      rawId: toText(credential.rawId),
      type: credential.type,
      clientExtensionResults: credential.getClientExtensionResults ? credential.getClientExtensionResults() : {},
      response: { clientDataJSON: toText(response.clientDataJSON) }
    };
    if (response.attestationObject) {
      json.response.attestationObject = toText(response.attestationObject);
      json.response.transports = response.getTransports ? response.getTransports() : [];
    } else {
      json.response.authenticatorData = toText(response.authenticatorData);
      json.response.signature = toText(response.signature);
      json.response.userHandle = toText(response.userHandle);
    }
    return JSON.stringify(json);
  }

  function start(button) {
    var form = button.closest("form");
    var box = button.closest("[data-options-url]");
    var status = box.querySelector("[data-security-key-status]");
    var token = form.querySelector("input[name=csrf_token]");
    var creating = button.getAttribute("data-security-key") === "create";
    var answer = form.querySelector(creating ? "input[name=credential]" : "input[name=assertion]");
    if (!window.PublicKeyCredential) {
      status.textContent = "This browser cannot use security keys.";
      return;
    }
    status.textContent = "Touch your security key…";
    button.disabled = true;
    fetch(box.getAttribute("data-options-url"), {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": token ? token.value : "", "Accept": "application/json" }
    }).then(function (reply) {
      if (!reply.ok) throw new Error("the server did not hand out a challenge (" + reply.status + ")");
      return reply.json();
    }).then(function (options) {
      options.challenge = toBytes(options.challenge);
      if (creating) {
        options.user = Object.assign({}, options.user, { id: toBytes(options.user.id) });
        options.excludeCredentials = listed(options.excludeCredentials);
        return navigator.credentials.create({ publicKey: options });
      }
      options.allowCredentials = listed(options.allowCredentials);
      return navigator.credentials.get({ publicKey: options });
    }).then(function (credential) {
      answer.value = credentialJSON(credential);
      status.textContent = "Key answered; checking…";
      form.submit();
    }).catch(function (error) {
      button.disabled = false;
      status.textContent = "The security key did not answer: " + (error && error.message ? error.message : error);
    });
  }

  document.querySelectorAll("[data-security-key]").forEach(function (button) {
    button.addEventListener("click", function () { start(button); });
  });
})();
