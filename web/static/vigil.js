// Vigil's page script: local times, Plotly charts from embedded JSON, select-all, confirmations, zoom.
(function () {
  "use strict";
  function fmt(ts) {
    var d = new Date(ts * 1000);
    return d.toLocaleString(undefined, {year: "numeric", month: "2-digit", day: "2-digit",
                                        hour: "2-digit", minute: "2-digit", second: "2-digit"});
  }
  function drawPlots() {
    if (!window.Plotly) return;
    document.querySelectorAll("[data-figure-id]").forEach(function (el) {
      var src = document.getElementById(el.getAttribute("data-figure-id"));
      if (!src) return;
      var fig = JSON.parse(src.textContent);
      // plotly.js shows epoch milliseconds as UTC: shift them so the axis reads in the browser's time zone
      var local = function (ms) { return typeof ms === "number" ? ms - new Date(ms).getTimezoneOffset() * 60000 : ms; };
      fig.data.forEach(function (t) { if (t.x) t.x = t.x.map(local); });
      if (fig.layout.xaxis && fig.layout.xaxis.range) fig.layout.xaxis.range = fig.layout.xaxis.range.map(local);
      (fig.layout.shapes || []).forEach(function (s) { s.x0 = local(s.x0); s.x1 = local(s.x1); });
      window.Plotly.newPlot(el, fig.data, fig.layout, {responsive: true, displaylogo: false});
      if (el.getAttribute("data-zoom")) {
        el.on("plotly_relayout", function (ev) {
          var a = ev["xaxis.range[0]"], b = ev["xaxis.range[1]"];
          if (!a || !b) return;
          var u = new URL(window.location.href);
          u.searchParams.set("from", Math.floor(new Date(a).getTime() / 1000));
          u.searchParams.set("to", Math.ceil(new Date(b).getTime() / 1000));
          window.history.replaceState(null, "", u.toString());
        });
      }
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("time[data-ts]").forEach(function (t) {
      var ts = parseInt(t.getAttribute("data-ts"), 10);
      if (!ts) return;
      if (!t.textContent) t.textContent = fmt(ts); else t.title = fmt(ts);
    });
    document.querySelectorAll(".check-all").forEach(function (box) {
      box.addEventListener("change", function () {
        var name = box.getAttribute("data-name") || "hostid";
        box.closest("form").querySelectorAll("input[type=checkbox][name=" + name + "]").forEach(function (c) { c.checked = box.checked; });
      });
    });
    document.querySelectorAll("[data-confirm]").forEach(function (b) {
      b.addEventListener("click", function (e) { if (!window.confirm(b.getAttribute("data-confirm"))) e.preventDefault(); });
    });
    drawPlots();
    // pages that show live values reload every minute while visible (as Zabbix's 60 s refresh)
    var every = parseInt(document.body.getAttribute("data-refresh") || "0", 10);
    if (every > 0) {
      window.setInterval(function () {
        if (!document.hidden && !document.querySelector("input:focus, select:focus, input[type=checkbox]:checked"))
          window.location.reload();
      }, every * 1000);
    }
  });
})();
