// flaglog's live pages: when the log grows (the /live event stream), fetch this page again and
// swap its <main>, unless the visitor is typing in one of its forms. Pages work without it.
(function () {
  "use strict";
  var main = document.querySelector("main[data-live]");
  if (!main || !window.EventSource || !window.fetch) return;
  var busy = false;
  function typing() {
    var active = document.activeElement;
    return active && main.contains(active) && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName);
  }
  function refresh() {
    if (busy || typing()) return;
    busy = true;
    fetch(window.location.href, { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (!html) return;
        var fresh = new DOMParser().parseFromString(html, "text/html").querySelector("main");
        if (fresh && !typing()) {
          main.innerHTML = fresh.innerHTML;
          main.setAttribute("data-refreshed", String(Date.now()));
        }
      })
      .catch(function () {})
      .then(function () { busy = false; });
  }
  new EventSource("/live").addEventListener("change", refresh);
})();
