// Knowledge-base suggestions while a case is being filed: asks /kb/search for the words typed into the
// title and description and lists the best articles. Same origin only; text is inserted as text, never HTML.
(function () {
  "use strict";
  var list = document.getElementById("kb-suggestions");
  var fields = document.querySelectorAll("[data-kb-suggest]");
  if (!list || !fields.length) { return; }
  var timer = null;
  var lastQuery = "";
  var seq = 0;

  function query() {
    var parts = [];
    fields.forEach(function (field) { parts.push(field.value); });
    return parts.join(" ").replace(/\s+/g, " ").trim().slice(0, 400);
  }

  function show(hits) {
    while (list.firstChild) { list.removeChild(list.firstChild); }
    hits.forEach(function (hit) {
      var item = document.createElement("li");
      var link = document.createElement("a");
      link.href = "/kb/" + encodeURIComponent(hit.slug);
      link.target = "_blank";
      link.rel = "noopener";
      link.textContent = hit.title;
      var snippet = document.createElement("div");
      snippet.className = "snippet";
      snippet.textContent = hit.snippet;
      item.appendChild(link);
      item.appendChild(snippet);
      list.appendChild(item);
    });
  }

  function lookup() {
    var q = query();
    if (q === lastQuery) { return; }
    lastQuery = q;
    if (q.length < 3) { show([]); return; }
    var mine = ++seq;
    fetch("/kb/search?q=" + encodeURIComponent(q), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : []; })
      .then(function (hits) { if (mine === seq && Array.isArray(hits)) { show(hits); } })
      .catch(function () { /* suggestions are a help, not a must */ });
  }

  fields.forEach(function (field) {
    field.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(lookup, 250);
    });
  });
  lookup();
})();
