/*
 * Clicktrail tracking snippet (no dependencies).
 *
 * Put it on the page a tracked link lands on:
 *   <script src="https://CLICKTRAIL_HOST/static/ct.js" data-cookie-days="30" defer></script>
 *
 * When the URL carries a click id (?ct_click=...), the snippet keeps it in a first-party cookie
 * (ct_click) for the program's cookie lifetime, so it survives the shopper browsing around before
 * signing up or buying. Read it with Clicktrail.clickId(), or let the snippet fill every
 * <input data-clicktrail="click_id"> on the page; the merchant's back end then sends it as
 * "click_id" with the conversion (POST /api/v1/conversions).
 *
 * When the URL carries an affiliate's referral code instead (?ref=... or ?via=..., letters, digits,
 * "_" and "-", up to 64), the snippet keeps that in a second cookie (ct_ref) under the same rules;
 * read it with Clicktrail.referralCode(). The newest landing wins (last click): landing with a click
 * id forgets a kept code and landing with a code forgets a kept click id, so the two never disagree;
 * a URL with both keeps the click id. Clicktrail.referral() is the click id if one is kept, else the
 * code, else null: the value to pass as Stripe Checkout's client_reference_id. The snippet fills
 * every <input data-clicktrail="referral"> with it. Values of any other shape are ignored.
 *
 * Options (attributes on the script tag): data-cookie-days (default 30), data-param (default
 * ct_click), data-cookie (default ct_click), data-ref-cookie (default ct_ref), data-domain (share
 * the cookies across subdomains).
 */
(function (window, document) {
  "use strict";
  var script = document.currentScript;
  function option(name, fallback) {
    var value = script && script.getAttribute("data-" + name);
    return value ? value : fallback;
  }
  var TOKEN = /^[A-Za-z0-9_-]{22,32}$/;
  var CODE = /^[A-Za-z0-9_-]{1,64}$/;
  var NAME = /^[A-Za-z0-9_-]{1,64}$/;
  var CODE_PARAMS = ["ref", "via"];
  var param = option("param", "ct_click");
  var cookieName = NAME.test(option("cookie", "ct_click")) ? option("cookie", "ct_click") : "ct_click";
  var refCookieName = NAME.test(option("ref-cookie", "ct_ref")) ? option("ref-cookie", "ct_ref") : "ct_ref";
  // One cookie for both would be forgotten as soon as it is written.
  if (refCookieName === cookieName) refCookieName = cookieName + "_ref";
  var days = parseInt(option("cookie-days", "30"), 10);
  if (!(days >= 1 && days <= 3650)) days = 30;
  var domain = option("domain", "");

  function fromUrl(names, shape) {
    try {
      var params = new URL(window.location.href).searchParams;
      for (var i = 0; i < names.length; i++) {
        var value = params.get(names[i]);
        if (value && shape.test(value)) return value;
      }
    } catch (error) {
      return null;
    }
    return null;
  }

  function fromCookie(name, shape) {
    var parts = document.cookie ? document.cookie.split("; ") : [];
    for (var i = 0; i < parts.length; i++) {
      var eq = parts[i].indexOf("=");
      if (parts[i].slice(0, eq) === name) {
        var value = parts[i].slice(eq + 1);
        return shape.test(value) ? value : null;
      }
    }
    return null;
  }

  function writeCookie(name, value, seconds) {
    var cookie = name + "=" + value + "; Max-Age=" + seconds + "; Path=/; SameSite=Lax";
    if (/^[A-Za-z0-9.-]+$/.test(domain)) cookie += "; Domain=" + domain;
    if (window.location.protocol === "https:") cookie += "; Secure";
    document.cookie = cookie;
  }

  function remember(name, value) {
    writeCookie(name, value, days * 86400);
  }

  function forget(name) {
    writeCookie(name, "", 0);
  }

  // The newest landing replaces what an older one kept (last click); a click id outranks a code beside it.
  var landedClick = fromUrl([param], TOKEN);
  var landedCode = landedClick ? null : fromUrl(CODE_PARAMS, CODE);
  var landed = landedClick || landedCode;
  if (landedClick) {
    remember(cookieName, landedClick);
    forget(refCookieName);
  } else if (landedCode) {
    remember(refCookieName, landedCode);
    forget(cookieName);
  }

  function clickId() {
    return landed ? landedClick : fromCookie(cookieName, TOKEN);
  }

  function referralCode() {
    return landed ? landedCode : fromCookie(refCookieName, CODE);
  }

  function referral() {
    return clickId() || referralCode();
  }

  function fillInputs(root, kind, value) {
    if (!value) return 0;
    var inputs = (root || document).querySelectorAll('input[data-clicktrail="' + kind + '"]');
    for (var i = 0; i < inputs.length; i++) inputs[i].value = value;
    return inputs.length;
  }

  function fill(root) {
    return fillInputs(root, "click_id", clickId()) + fillInputs(root, "referral", referral());
  }

  window.Clicktrail = {
    clickId: clickId,
    referralCode: referralCode,
    referral: referral,
    fill: fill,
    cookieName: cookieName,
    refCookieName: refCookieName,
  };
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { fill(); });
  } else {
    fill();
  }
})(window, document);
