// Say so when an htmx request fails, so that nobody believes a label was saved when it was not.
(() => {
  const show = (text) => {
    let banner = document.getElementById("request-error");
    if (!banner) {
      banner = document.createElement("p");
      banner.id = "request-error";
      banner.className = "msg error banner";
      banner.setAttribute("role", "alert");
      document.querySelector("main")?.prepend(banner);
    }
    banner.textContent = text;
  };
  document.addEventListener("htmx:sendError", () =>
    show("Not saved: the server could not be reached. Check the connection and try again."));
  document.addEventListener("htmx:responseError", (event) => {
    const status = event.detail.xhr.status;
    const reason = status === 403 ? "you do not have permission for this"
      : status === 404 ? "it no longer exists or is not yours to see"
      : `the server answered ${status}`;
    show(`Not saved: ${reason}. Reload the page to see the current state.`);
  });
  document.addEventListener("htmx:afterRequest", (event) => {
    if (event.detail.successful) document.getElementById("request-error")?.remove();
  });
})();

// Forms that ask before doing something consequential (deploy, roll back): data-confirm.
document.addEventListener("submit", (event) => {
  const question = event.target.dataset?.confirm;
  if (question && !window.confirm(question)) event.preventDefault();
});

// The objective form shows only the parameters of the chosen metric (data-metrics on a field).
(() => {
  const form = document.getElementById("objective-form");
  if (!form) return;
  const sync = () => {
    const chosen = form.querySelector("input[type=radio][name$=metric]:checked")?.value;
    form.querySelectorAll("[data-metrics]").forEach((field) => {
      field.hidden = !field.dataset.metrics.split(" ").includes(chosen);
    });
  };
  form.addEventListener("change", sync);
  sync();
})();

// A form that starts over after it succeeded (the import form): data-reset-on-success.
// (An event listener rather than hx-on, which the Content Security Policy would block.)
// Only the form's own request counts: a button inside it posting elsewhere (the import's
// "Update the preview", whose element is swapped away) must keep the chosen file.
document.addEventListener("htmx:afterRequest", (event) => {
  const form = event.detail.elt;
  if (form?.dataset?.resetOnSuccess === undefined || event.detail.xhr.status !== 200) return;
  if (event.detail.pathInfo?.requestPath !== form.getAttribute("hx-post")) return;
  form.reset();
});

// "Select every case of this page" on the review board: a header checkbox with
// data-select-page="<name>" checks or clears the form's checkboxes of that name, and shows
// whether all, some or none of them are checked.
(() => {
  const boxes = (all) => all.form?.querySelectorAll(`input[type=checkbox][name="${all.dataset.selectPage}"]`) ?? [];
  const sync = (all) => {
    const list = [...boxes(all)];
    const checked = list.filter((box) => box.checked).length;
    all.checked = list.length > 0 && checked === list.length;
    all.indeterminate = checked > 0 && checked < list.length;
  };
  document.addEventListener("change", (event) => {
    const target = event.target;
    if (target.matches?.("input[data-select-page]")) {
      boxes(target).forEach((box) => { box.checked = target.checked; });
      return;
    }
    target.form?.querySelectorAll("input[data-select-page]").forEach((all) => {
      if (all.dataset.selectPage === target.name) sync(all);
    });
  });
})();
