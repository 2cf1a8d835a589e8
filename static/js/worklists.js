// Worklists: the new-worklist form shows "months" only for recent cases; the reranking list
// moves cases by drag and drop (SortableJS) and by keyboard, and saves the whole order through
// htmx after every move. Judgments are plain htmx forms; the keys only click their buttons.

// The months field belongs to "unlabeled cases of the last months" only.
(() => {
  const form = document.getElementById("worklist-form");
  if (!form) return;
  const source = form.querySelector("select[name=source]");
  const sync = () => {
    form.querySelectorAll("[data-show-for-source]").forEach((field) => {
      field.hidden = field.dataset.showForSource !== source.value;
    });
  };
  source.addEventListener("change", sync);
  sync();
})();

// The agreement page's "top k" choice applies at once.
document.querySelectorAll("select[data-submit-on-change]").forEach((select) => {
  select.addEventListener("change", () => select.form.requestSubmit());
});

(() => {
  const PLACES = (n) => `${n} place${n === 1 ? "" : "s"}`;
  let currentCaseId = null; // the focused case, kept across a list shown again after a refusal

  const list = () => document.getElementById("worklist-rows");
  const rows = () => Array.from(list()?.children ?? []);
  const rowOf = (caseId) => list()?.querySelector(`.wl-row[data-case-id="${caseId}"]`);
  const currentRow = () => {
    const focused = document.activeElement?.closest?.(".wl-row");
    return focused ?? (currentCaseId ? rowOf(currentCaseId) : null);
  };

  const focusRow = (row, { scroll = true } = {}) => {
    if (!row) return;
    for (const other of list().querySelectorAll('.wl-row[tabindex="0"]')) {
      if (other !== row) other.tabIndex = -1;
    }
    row.tabIndex = 0;
    currentCaseId = row.dataset.caseId;
    row.focus({ preventScroll: true });
    if (scroll) row.scrollIntoView({ block: "nearest" });
  };

  // Positions and "moved from the model's rank" badges, as the server draws them.
  const renumber = () => {
    rows().forEach((row, index) => {
      const position = index + 1;
      row.querySelector(".pos").textContent = position;
      const places = Number(row.dataset.modelRank) - position;
      const badge = row.querySelector(".delta");
      badge.className = "delta" + (places > 0 ? " up" : places < 0 ? " down" : "");
      badge.textContent = places > 0 ? `▲${places}` : places < 0 ? `▼${-places}` : "";
      badge.title = places === 0 ? "Where the model put it"
        : `You moved it ${places > 0 ? "up" : "down"} ${PLACES(Math.abs(places))}`;
    });
  };

  const announce = (text) => {
    const region = document.getElementById("move-announcer");
    if (region) region.textContent = text;
  };

  // The whole order goes with the revision the page holds; htmx queues a save made while
  // another is on its way and sends it, with the new revision, when that one is answered.
  const save = () => {
    const form = document.getElementById("order-form");
    document.getElementById("order-input").value = rows().map((r) => r.dataset.caseId).join(",");
    form.requestSubmit();
  };

  const moved = (row) => {
    renumber();
    const position = rows().indexOf(row) + 1;
    const id = row.querySelector(".case-id")?.textContent ?? "";
    announce(`Case ${id} moved to place ${position} of ${rows().length}.`);
    save();
  };

  const moveTo = (row, index) => {
    const all = rows();
    const from = all.indexOf(row);
    index = Math.max(0, Math.min(all.length - 1, index));
    if (index === from) return;
    const anchor = index > from ? all[index].nextSibling : all[index];
    list().insertBefore(row, anchor);
    focusRow(row);
    moved(row);
  };

  // A judgment goes with the row's form: the value in its own field (outside the part the
  // answer replaces), so that a save queued behind another sends what was chosen last.
  const submitJudgment = (form, value) => {
    form.elements.namedItem("value").value = value;
    form.requestSubmit();
  };

  const judge = (row, key) => {
    const button = row.querySelectorAll(".judge-buttons button")[Number(key) - 1];
    if (button) submitJudgment(button.form, button.dataset.value);
  };

  const init = (root) => {
    const ol = root.id === "worklist-rows" ? root : root.querySelector?.("#worklist-rows");
    if (!ol || ol.dataset.ready) return;
    ol.dataset.ready = "1";
    if (window.Sortable) {
      window.Sortable.create(ol, {
        animation: 120,
        // Mouse events rather than the browser's own drag and drop: the same in every browser,
        // and the list scrolls while a case is dragged past its edge.
        forceFallback: true,
        fallbackTolerance: 4,
        filter: "input, button, textarea, select, summary, a, .all-features",
        preventOnFilter: false,
        ghostClass: "wl-ghost",
        chosenClass: "wl-chosen",
        onEnd: (event) => {
          if (event.oldIndex === event.newIndex) return;
          focusRow(event.item, { scroll: false });
          moved(event.item);
        },
      });
    }
    // Back to the case that had the focus before the list was shown again.
    const again = currentCaseId && rowOf(currentCaseId);
    if (again) focusRow(again);
  };

  document.addEventListener("focusin", (event) => {
    const row = event.target.closest?.(".wl-row");
    if (!row) return;
    for (const other of list().querySelectorAll('.wl-row[tabindex="0"]')) {
      if (other !== row) other.tabIndex = -1;
    }
    row.tabIndex = 0;
    currentCaseId = row.dataset.caseId;
  });

  document.addEventListener("keydown", (event) => {
    if (!list() || event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target.classList?.contains("reason")) {
      // Enter keeps the reason (it is saved on change) instead of submitting the form, which
      // would take the first button, "Actionable", as the judgment.
      if (event.key === "Enter" || event.key === "Escape") {
        event.preventDefault();
        const row = target.closest(".wl-row");
        target.blur();
        focusRow(row);
      }
      return;
    }
    if (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName)) return;
    const row = currentRow();
    const all = rows();
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    let handled = true;
    if (!row) {
      if (["ArrowDown", "ArrowUp", "j", "k"].includes(key) && all.length) focusRow(all[0]);
      else handled = false;
    } else if ((key === "ArrowDown" || key === "j") && event.shiftKey) {
      moveTo(row, all.indexOf(row) + 1);
    } else if ((key === "ArrowUp" || key === "k") && event.shiftKey) {
      moveTo(row, all.indexOf(row) - 1);
    } else if (key === "ArrowDown" || key === "j") {
      focusRow(all[Math.min(all.length - 1, all.indexOf(row) + 1)]);
    } else if (key === "ArrowUp" || key === "k") {
      focusRow(all[Math.max(0, all.indexOf(row) - 1)]);
    } else if (key === "Home") {
      focusRow(all[0]);
    } else if (key === "End") {
      focusRow(all[all.length - 1]);
    } else if (key === "t") {
      moveTo(row, 0);
    } else if (key === "b") {
      moveTo(row, all.length - 1);
    } else if (["1", "2", "3"].includes(key)) {
      judge(row, key);
    } else if (key === "r") {
      row.querySelector(".reason")?.focus();
    } else if (key === "f") {
      const details = row.querySelector(".all-features");
      if (details) details.open = !details.open;
    } else {
      handled = false;
    }
    if (handled) event.preventDefault();
  });

  document.addEventListener("click", (event) => {
    const button = event.target.closest?.(".judge-buttons button");
    if (button) submitJudgment(button.form, button.dataset.value);
  });

  // A reason typed after the judgment is saved with it: without a value, the judgment in force
  // ("current") is sent again with the new reason; before any judgment, it waits for one.
  document.addEventListener("change", (event) => {
    if (event.target.classList?.contains("reason")) submitJudgment(event.target.form, "");
  });

  // A save that failed says so where "Saved" stands (casebook.js also shows a banner).
  const failed = (event) => {
    if (!event.target.closest?.("#rerank-board")) return;
    const state = document.getElementById("save-state");
    if (!state) return;
    state.classList.add("failed");
    state.querySelector(".when-idle").textContent = "Not saved";
  };
  // Once a save goes through, the note about an earlier refused one has served.
  document.addEventListener("htmx:afterRequest", (event) => {
    const { elt, xhr } = event.detail;
    if (xhr?.status >= 200 && xhr.status < 300 && elt.isConnected && elt.closest("#rerank-board")) {
      document.getElementById("board-error")?.remove();
    }
  });
  document.addEventListener("htmx:sendError", failed);
  document.addEventListener("htmx:responseError", failed);

  if (window.htmx) window.htmx.onLoad(init);
  else document.addEventListener("DOMContentLoaded", () => init(document));
})();
