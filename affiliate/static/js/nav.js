// The phone menu: below 760 px the main navigation folds behind the "Menu" button (aria-expanded says whether it
// is open). Loaded in <head> without defer so the page is marked as scripted before it paints; without script the
// class is never set and the navigation simply stays open.
(function () {
  document.documentElement.classList.add("js");

  function init() {
    var button = document.querySelector(".menu-button[aria-controls]");
    if (!button) return;
    var bar = button.closest(".topbar");
    var nav = document.getElementById(button.getAttribute("aria-controls"));
    if (!bar || !nav) return;

    function set(open) {
      bar.classList.toggle("nav-open", open);
      button.setAttribute("aria-expanded", open ? "true" : "false");
    }

    button.addEventListener("click", function () {
      set(button.getAttribute("aria-expanded") !== "true");
    });
    // Escape closes the open menu and gives focus back to its button.
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && button.getAttribute("aria-expanded") === "true") {
        set(false);
        button.focus();
      }
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
