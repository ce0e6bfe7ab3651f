// Instafly status page: refresh the numbers from /api/status every few seconds (no libraries).
"use strict";

(function () {
  const REFRESH_MS = 10000;

  function lookup(document_, path) {
    return path.split(".").reduce((value, key) => (value == null ? undefined : value[key]), document_);
  }

  function format(value) {
    if (value === null || value === undefined) return "–";
    if (typeof value === "number" && Number.isInteger(value)) return value.toLocaleString("en-US");
    return String(value);
  }

  function apply(status) {
    document.querySelectorAll("[data-status]").forEach((element) => {
      const value = lookup(status, element.dataset.status);
      if (value !== undefined) element.textContent = format(value);
    });
    document.querySelectorAll("[data-status-progress]").forEach((element) => {
      const value = lookup(status, element.dataset.statusProgress);
      if (typeof value === "number") element.value = value;
    });
    document.querySelectorAll("[data-component]").forEach((element) => {
      const component = status.components[element.dataset.component];
      if (component) element.className = "pill pill-" + component.state;
    });
  }

  async function refresh() {
    try {
      const response = await fetch("/api/status", { headers: { Accept: "application/json" } });
      if (!response.ok) return false;
      apply(await response.json());
    } catch (error) {
      // The box may be restarting; try again at the next tick.
    }
    return true;
  }

  const timer = window.setInterval(async () => {
    if (!(await refresh())) window.clearInterval(timer);
  }, REFRESH_MS);
  window.instafly = { refresh };  // for the browser test, and for the curious
})();
