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
 * Options (attributes on the script tag): data-cookie-days (default 30), data-param (default
 * ct_click), data-cookie (default ct_click), data-domain (share the cookie across subdomains).
 */
(function (window, document) {
  "use strict";
  var script = document.currentScript;
  function option(name, fallback) {
    var value = script && script.getAttribute("data-" + name);
    return value ? value : fallback;
  }
  var TOKEN = /^[A-Za-z0-9_-]{22,32}$/;
  var NAME = /^[A-Za-z0-9_-]{1,64}$/;
  var param = option("param", "ct_click");
  var cookieName = NAME.test(option("cookie", "ct_click")) ? option("cookie", "ct_click") : "ct_click";
  var days = parseInt(option("cookie-days", "30"), 10);
  if (!(days >= 1 && days <= 3650)) days = 30;
  var domain = option("domain", "");

  function fromUrl() {
    try {
      var value = new URL(window.location.href).searchParams.get(param);
      return value && TOKEN.test(value) ? value : null;
    } catch (error) {
      return null;
    }
  }

  function fromCookie() {
    var parts = document.cookie ? document.cookie.split("; ") : [];
    for (var i = 0; i < parts.length; i++) {
      var eq = parts[i].indexOf("=");
      if (parts[i].slice(0, eq) === cookieName) {
        var value = parts[i].slice(eq + 1);
        return TOKEN.test(value) ? value : null;
      }
    }
    return null;
  }

  function remember(value) {
    var cookie = cookieName + "=" + value + "; Max-Age=" + days * 86400 + "; Path=/; SameSite=Lax";
    if (/^[A-Za-z0-9.-]+$/.test(domain)) cookie += "; Domain=" + domain;
    if (window.location.protocol === "https:") cookie += "; Secure";
    document.cookie = cookie;
  }

  var landed = fromUrl();
  if (landed) remember(landed); // the newest tracked click replaces an older one: last click

  function clickId() {
    return landed || fromCookie();
  }

  function fill(root) {
    var value = clickId();
    if (!value) return 0;
    var inputs = (root || document).querySelectorAll('input[data-clicktrail="click_id"]');
    for (var i = 0; i < inputs.length; i++) inputs[i].value = value;
    return inputs.length;
  }

  window.Clicktrail = { clickId: clickId, fill: fill, cookieName: cookieName };
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { fill(); });
  } else {
    fill();
  }
})(window, document);
