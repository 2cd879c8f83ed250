// Tables on a phone: each cell gets its column's header text as data-label, and the table the class "stacked", so
// the stylesheet can show every row as a small card (one line per cell, the label before it) on narrow screens.
// A table marked class="no-stack" keeps its columns and scrolls sideways inside its frame instead.
(function () {
  function labels(table) {
    var head = table.tHead && table.tHead.rows[table.tHead.rows.length - 1];
    if (!head) return null;
    var names = [];
    Array.prototype.forEach.call(head.cells, function (cell) {
      var text = (cell.innerText || cell.textContent || "").replace(/\s+/g, " ").trim();
      for (var n = 0; n < (cell.colSpan || 1); n++) names.push(text);
    });
    return names;
  }

  function stack(table) {
    if (table.classList.contains("no-stack") || table.classList.contains("stacked")) return;
    var names = labels(table);
    if (!names) return;
    Array.prototype.forEach.call(table.tBodies, function (body) {
      Array.prototype.forEach.call(body.rows, function (row) {
        var column = 0;
        Array.prototype.forEach.call(row.cells, function (cell) {
          var name = names[column];
          // A row header (<th scope="row">) stays unlabelled: it reads as the title of its row's card.
          if (name && cell.tagName === "TD" && !cell.hasAttribute("data-label")) cell.setAttribute("data-label", name);
          column += cell.colSpan || 1;
        });
      });
    });
    table.classList.add("stacked");
  }

  document.querySelectorAll("main table").forEach(stack);

  // On a phone each labelled cell's content goes into one <div class="cell-value">, so the label and the value
  // are two columns of the cell however many elements the value holds (done only when the layout stacks).
  var phone = window.matchMedia("(max-width: 760px)");
  function wrapCells() {
    if (!phone.matches) return;
    document.querySelectorAll("main table.stacked td[data-label]").forEach(function (cell) {
      if (cell.firstElementChild && cell.firstElementChild.classList.contains("cell-value") && cell.childNodes.length === 1) return;
      var value = document.createElement("div");
      value.className = "cell-value";
      while (cell.firstChild) value.appendChild(cell.firstChild);
      cell.appendChild(value);
    });
  }
  wrapCells();
  if (phone.addEventListener) phone.addEventListener("change", wrapCells);

  // A frame that scrolls sideways (a .no-stack table on a phone, a wide table without stacking) must be reachable
  // by keyboard: it becomes a focusable region named after the table's caption.
  function focusable() {
    document.querySelectorAll("main .table-wrap").forEach(function (wrap) {
      var scrolls = wrap.scrollWidth > wrap.clientWidth + 1;
      if (scrolls && !wrap.hasAttribute("tabindex")) {
        var caption = wrap.querySelector("caption");
        wrap.setAttribute("tabindex", "0");
        wrap.setAttribute("role", "region");
        wrap.setAttribute("aria-label", caption ? caption.textContent.trim() : "Table, scrolls sideways");
      } else if (!scrolls && wrap.getAttribute("tabindex") === "0") {
        wrap.removeAttribute("tabindex");
        wrap.removeAttribute("role");
        wrap.removeAttribute("aria-label");
      }
    });
  }
  focusable();
  window.addEventListener("resize", focusable);
})();
