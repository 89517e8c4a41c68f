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

  // Tables that become one card per row on a phone (`table.stacks`, static/app.css): each cell
  // is shown under its column's name, taken from the table's own header.
  function labelStackedCells() {
    document.querySelectorAll("table.stacks").forEach(function (table) {
      var names = Array.prototype.map.call(table.querySelectorAll("thead th"), function (th) {
        return th.textContent.trim();
      });
      table.querySelectorAll("tbody tr").forEach(function (row) {
        Array.prototype.forEach.call(row.children, function (cell, index) {
          if (!cell.hasAttribute("data-label") && names[index]) { cell.setAttribute("data-label", names[index]); }
        });
      });
    });
  }

  function prepare(root) {
    showCopyButtons(root);
    labelStackedCells();  // the whole page: a swapped row's table lies outside the swapped part
  }

  document.addEventListener("DOMContentLoaded", function () { prepare(document); });
  document.addEventListener("htmx:load", function (event) { prepare(event.target); });
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

  // Relative times (`<time data-relative>`, drawn by the `when` macro) kept fresh on an open
  // page, in the words of webapp/views/web.py `relative`: "12 min ago", "in 3 d".
  function span(seconds, precise) {
    var rest;
    if (seconds < 60) { return "under a minute"; }
    if (seconds < 3600) { return Math.floor(seconds / 60) + " min"; }
    if (seconds < 48 * 3600) {
      rest = Math.floor(seconds % 3600 / 60);
      return Math.floor(seconds / 3600) + " h" + (precise && rest ? " " + rest + " min" : "");
    }
    rest = Math.floor(seconds % 86400 / 3600);
    return Math.floor(seconds / 86400) + " d" + (precise && rest ? " " + rest + " h" : "");
  }

  function refreshTimes() {
    var now = Date.now();
    document.querySelectorAll("time[data-relative]").forEach(function (element) {
      var moment = Date.parse(element.getAttribute("datetime"));
      if (isNaN(moment)) { return; }
      var seconds = (moment - now) / 1000;
      var amount = span(Math.abs(seconds), element.getAttribute("data-relative") === "precise");
      element.textContent = seconds >= 0 ? "in " + amount : amount + " ago";
    });
  }

  setInterval(refreshTimes, 30000);

  // Close <details> menus and dialogs with Escape for keyboard users.
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") {
      document.querySelectorAll("details[open]").forEach(function (d) { d.removeAttribute("open"); });
    }
  });
})();
