// Keyboard labeling: number keys label, S skips, U undoes. The buttons stay the single source of
// truth (htmx posts them), the keys only click them.
document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const target = event.target;
  if (target && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName))) return;
  const fieldset = document.getElementById("label-buttons");
  if (fieldset && fieldset.disabled) return; // a label is being saved
  let button = null;
  if (/^[1-9]$/.test(event.key)) {
    button = document.querySelector(`.label-button[data-key="${event.key}"]`);
  } else if (event.key === "s" || event.key === "S") {
    button = document.getElementById("skip-button");
  } else if (event.key === "u" || event.key === "U") {
    button = document.getElementById("undo-button");
  }
  if (button && !button.disabled) {
    event.preventDefault();
    button.click();
  }
});

// A page restored from the back/forward cache shows the case as it was when the person left;
// it may have been labeled since (by them, in this tab). Ask the server for the case held now.
window.addEventListener("pageshow", (event) => {
  if (event.persisted && document.getElementById("case-panel")) window.location.reload();
});
