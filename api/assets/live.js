// flaglog's live pages: when the log grows (the /live event stream), fetch this page again and
// swap its <main>, unless the visitor is editing in it: typing in a field, a field changed, or
// a form opened (<details open>). Pages work without it.
(function () {
  "use strict";
  var main = document.querySelector("main[data-live]");
  if (!main || !window.EventSource || !window.fetch) return;
  var busy = false;
  function changed(field) {
    if (field.type === "hidden") return false;
    if (field.type === "checkbox" || field.type === "radio") return field.checked !== field.defaultChecked;
    if (field.tagName === "SELECT") {
      var chosen = 0;
      for (var i = 0; i < field.options.length; i++) if (field.options[i].defaultSelected) chosen = i;
      return field.selectedIndex !== chosen;
    }
    return field.value !== field.defaultValue;
  }
  function editing() {
    var active = document.activeElement;
    if (active && main.contains(active) && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName)) return true;
    if (main.querySelector("details[open]")) return true;
    var fields = main.querySelectorAll("input, textarea, select");
    for (var i = 0; i < fields.length; i++) if (changed(fields[i])) return true;
    return false;
  }
  function refresh() {
    if (busy || editing()) return;
    busy = true;
    fetch(window.location.href, { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (!html) return;
        var fresh = new DOMParser().parseFromString(html, "text/html").querySelector("main");
        if (fresh && !editing()) {
          main.innerHTML = fresh.innerHTML;
          main.setAttribute("data-refreshed", String(Date.now()));
        }
      })
      .catch(function () {})
      .then(function () { busy = false; });
  }
  new EventSource("/live").addEventListener("change", refresh);
})();
