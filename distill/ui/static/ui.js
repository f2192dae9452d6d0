// distill ui: live fragments and the chain view's raw/rendered switch. No framework, no inline
// script (the Content-Security-Policy forbids it): the server renders and escapes everything;
// this only fetches fragments it rendered and swaps them in.
"use strict";

function schedule(el) {
  const every = Number(el.dataset.every || 5000);
  const target = el.dataset.target ? document.querySelector(el.dataset.target) : el;
  let delay = every;
  const tick = async () => {
    if (!el.isConnected || !target) return;
    if (document.hidden) { setTimeout(tick, every); return; }
    const started = performance.now();
    try {
      const response = await fetch(el.dataset.refresh, {
        credentials: "same-origin",
        headers: { "Accept": "text/html" },
      });
      if (response.ok) {
        target.innerHTML = await response.text();
        target.dispatchEvent(new CustomEvent("distill:refreshed", { bubbles: true }));
      }
    } catch (err) {
      // the server is restarting or gone: keep the last view, try again later
    }
    // A slow answer (a big live run) is asked for less often: the page never loads the server.
    delay = Math.max(every, 4 * (performance.now() - started));
    if (target === el) {
      setTimeout(tick, delay);
    } else {
      scan(target);
    }
  };
  setTimeout(tick, every);
}

function scan(root) {
  root.querySelectorAll("[data-refresh]").forEach(schedule);
}

function switches(root) {
  root.querySelectorAll(".view-switch").forEach((group) => {
    const container = group.parentElement;
    group.querySelectorAll("button[data-view]").forEach((button) => {
      button.addEventListener("click", () => {
        const view = button.dataset.view;
        group.querySelectorAll("button[data-view]").forEach((b) => {
          b.setAttribute("aria-pressed", String(b === button));
        });
        container.querySelectorAll("[data-pane]").forEach((pane) => {
          pane.hidden = pane.dataset.pane !== view;
        });
      });
    });
  });
}

function autosubmit(root) {
  root.querySelectorAll("form.filters select").forEach((select) => {
    select.addEventListener("change", () => select.form.requestSubmit());
  });
}

document.addEventListener("DOMContentLoaded", () => {
  scan(document);
  switches(document);
  autosubmit(document);
});
