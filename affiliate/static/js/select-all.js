// A header checkbox that ticks every row of its table, for the pages that act on many rows at once.
// Markup: <input type="checkbox" data-select-all="ids" hidden> in the table's header, row checkboxes named "ids"
// in the same form (inside it, or naming it with form=""), and an element with data-selected-count (aria-live)
// inside the form to announce "N selected".
// Without script the header box stays hidden and the row boxes work on their own.
(function () {
  function setUp(master) {
    var form = master.form;
    if (!form) { return; }
    // form.elements also holds boxes outside the form that name it in their form="" attribute.
    var rows = Array.prototype.filter.call(form.elements, function (box) {
      return box !== master && box.type === "checkbox" && box.name === master.dataset.selectAll;
    });
    if (!rows.length) { return; }
    var counter = form.querySelector("[data-selected-count]");
    function refresh(announce) {
      var ticked = rows.filter(function (box) { return box.checked; }).length;
      master.checked = ticked === rows.length;
      master.indeterminate = ticked > 0 && ticked < rows.length;
      if (counter && announce) {
        counter.textContent = ticked ? ticked + " selected" : "None selected";
      }
    }
    master.addEventListener("change", function () {
      rows.forEach(function (box) { box.checked = master.checked; });
      refresh(true);
    });
    rows.forEach(function (box) {
      box.addEventListener("change", function () { refresh(true); });
    });
    master.hidden = false;
    // Rows kept ticked after a form error: show the header's state, and say how many once.
    var already = rows.some(function (box) { return box.checked; });
    refresh(already);
  }
  document.querySelectorAll("input[data-select-all]").forEach(setUp);
})();
