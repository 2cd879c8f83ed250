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
})();
