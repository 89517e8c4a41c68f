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

  // Copy buttons (`data-copy` names the element whose text they copy): hidden until this
  // script runs, so a page without it shows no dead button.
  function showCopyButtons(root) {
    if (!navigator.clipboard) {
      return;
    }
    root.querySelectorAll("button[data-copy]").forEach(function (button) { button.hidden = false; });
  }

  document.addEventListener("DOMContentLoaded", function () { showCopyButtons(document); });
  document.addEventListener("htmx:load", function (event) { showCopyButtons(event.target); });
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("button[data-copy]");
    if (!button) {
      return;
    }
    var source = document.getElementById(button.dataset.copy);
    var note = document.querySelector("[data-copied-for='" + button.dataset.copy + "']");
    navigator.clipboard.writeText(source.textContent.trim()).then(function () {
      button.textContent = "Copied";
      if (note) { note.textContent = "Copied to the clipboard."; }
    }, function () {
      if (note) { note.textContent = "Copying was refused: select the text and copy it yourself."; }
    });
  });

  // Close <details> menus and dialogs with Escape for keyboard users.
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") {
      document.querySelectorAll("details[open]").forEach(function (d) { d.removeAttribute("open"); });
    }
  });
})();
