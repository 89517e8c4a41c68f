// Live updates under a strict CSP: instead of `hx-trigger="every 2s [filter]"` (filters
// need eval), elements listen for `rg-poll from:body`, which fires every POLL_MS only
// while the tab is visible, and once at once when it becomes visible again.
(function () {
  "use strict";
  var POLL_MS = 2000;

  function poll() {
    if (document.visibilityState === "visible" && window.htmx) {
      window.htmx.trigger(document.body, "rg-poll");
    }
  }

  setInterval(poll, POLL_MS);
  document.addEventListener("visibilitychange", poll);

  // Close <details> menus and dialogs with Escape for keyboard users.
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") {
      document.querySelectorAll("details[open]").forEach(function (d) { d.removeAttribute("open"); });
    }
  });
})();
