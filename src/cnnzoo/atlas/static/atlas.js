// cnnzoo atlas: the index's filter by family and year (no libraries, works from file://)
(function () {
  "use strict";
  var family = document.getElementById("filter-family");
  if (!family) { return; }
  var from = document.getElementById("filter-from");
  var to = document.getElementById("filter-to");
  var count = document.getElementById("filter-count");

  function shown(el) {
    var f = el.getAttribute("data-family");
    var y = el.getAttribute("data-year");
    if (family.value && f !== family.value) { return false; }
    if (y !== null && (+y < +from.value || +y > +to.value)) { return false; }
    return true;
  }

  function apply() {
    var rows = 0;
    document.querySelectorAll("tr[data-family], .lineage li[data-family]").forEach(function (el) {
      var keep = shown(el);
      el.classList.toggle("hidden", !keep);
      if (keep && el.tagName === "TR") { rows += 1; }
    });
    document.querySelectorAll("section.family").forEach(function (section) {
      section.classList.toggle("hidden", section.querySelector("tr[data-family]:not(.hidden)") === null);
    });
    // drawings keep their layout: what is filtered out is dimmed, not removed
    document.querySelectorAll("svg .node, svg .dot, svg .row-label, .legend .swatch").forEach(function (el) {
      el.classList.toggle("dim", !shown(el));
    });
    document.querySelectorAll("svg .edge").forEach(function (el) {
      var keep = !family.value || el.getAttribute("data-source") === family.value ||
        el.getAttribute("data-target") === family.value;
      el.classList.toggle("dim", !keep);
    });
    count.textContent = rows + " models shown";
  }

  [family, from, to].forEach(function (el) { el.addEventListener("change", apply); });
  apply();
})();
