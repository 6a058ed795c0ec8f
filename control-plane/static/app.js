// The dashboard's only script: confirmations and the live view of a migration run.
// Everything works without it except the live refresh.
"use strict";

document.addEventListener("submit", function (event) {
  var form = event.target;
  var question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

// An element with data-live="URL" is replaced by the HTML fragment at URL every second
// until the fragment says it is finished (data-finished="true").
(function () {
  var live = document.querySelector("[data-live]");
  if (!live) return;
  var url = live.getAttribute("data-live");
  function tick() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) {
        // The session expired: the fragment's request was sent to the login page.
        if (r.redirected && r.url.indexOf("/owner/login") !== -1) {
          window.location.href = r.url;
          return Promise.reject("signed out");
        }
        return r.ok ? r.text() : Promise.reject(r.status);
      })
      .then(function (html) {
        live.innerHTML = html;
        var done = live.querySelector("[data-finished='true']");
        if (!done) window.setTimeout(tick, 1000);
      })
      .catch(function () { window.setTimeout(tick, 3000); });
  }
  if (!live.querySelector("[data-finished='true']")) window.setTimeout(tick, 1000);
})();
