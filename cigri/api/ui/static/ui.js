// cigri dashboard: progressive enhancement only (every page works without this file).
// 1. Elements with data-poll="<url>" are refreshed from that fragment every data-poll-ms (body),
//    unless the page is hidden or the keyboard focus is inside them (never steal a user's place).
// 2. Forms with data-confirm ask before they are sent.
(function () {
  "use strict";
  var period = parseInt(document.body.getAttribute("data-poll-ms"), 10) || 5000;

  function refresh(element) {
    if (document.hidden || element.contains(document.activeElement)) { return; }
    var url = element.getAttribute("data-poll");
    fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(function (response) {
        if (!response.ok) { throw new Error(response.status); }
        return response.text();
      })
      .then(function (html) {
        if (!element.contains(document.activeElement)) { element.innerHTML = html; }
        element.removeAttribute("data-stale");
      })
      .catch(function () { element.setAttribute("data-stale", "1"); });
  }

  function start() {
    var live = document.querySelectorAll("[data-poll]");
    if (!live.length) { return; }
    window.setInterval(function () { live.forEach(refresh); }, period);
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { event.preventDefault(); }
  });

  start();
}());
