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
      if (value !== undefined) element.textContent = "plain" in element.dataset ? String(value) : format(value);
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

  // The model card changes shape when training starts or ends (progress bar, outcome): then it
  // is fetched again as the server draws it, and swapped in without reloading the page.
  function modelState(status) {
    const outcome = status.model.last_outcome;
    return [status.model.training.running, outcome ? outcome.finished : null, status.model.version,
            status.model.weights.ok, (status.model.weights.download || {}).state].join("|");
  }

  // The repairs list (_repairs.html) is redrawn when a problem comes, goes or changes severity.
  function repairsState(status) {
    return (status.repairs ? status.repairs.problems : []).map((p) => p.id + ":" + p.severity).join("|");
  }

  async function redraw(ids) {
    const response = await fetch("/", { headers: { Accept: "text/html" } });
    if (!response.ok) return;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    for (const id of ids) {
      const card = fresh.getElementById(id);
      const shown = document.getElementById(id);
      if (card && shown) shown.replaceWith(document.adoptNode(card));
    }
  }

  let shownModel = null;
  let shownRepairs = null;

  async function refresh() {
    try {
      const response = await fetch("/api/status", { headers: { Accept: "application/json" } });
      if (!response.ok) return false;
      const status = await response.json();
      apply(status);
      const state = modelState(status);
      const repairs = repairsState(status);
      const stale = [];
      if (shownModel !== null && state !== shownModel) stale.push("model");
      if (shownRepairs !== null && repairs !== shownRepairs) stale.push("repairs");
      if (stale.length) await redraw(stale);
      shownModel = state;
      shownRepairs = repairs;
    } catch (error) {
      // The box may be restarting; try again at the next tick.
    }
    return true;
  }

  // Previews the box was too busy to draw (it answers 503 while a few are being drawn) are asked
  // for again a moment later; one it cannot preview at all (a truncated capture) leaves its grey
  // tile, not a broken image icon.
  const PREVIEW_RETRIES = 4;
  function again(url, attempt) {
    const base = url.replace(/([?&])r=\d+/, "$1").replace(/[?&]$/, "");
    return base + (base.includes("?") ? "&" : "?") + "r=" + attempt;
  }
  document.addEventListener("error", (event) => {
    const image = event.target;
    if (!(image instanceof HTMLImageElement)) return;
    const attempt = Number(image.dataset.retries || 0) + 1;
    if (attempt > PREVIEW_RETRIES) {
      image.classList.add("no-preview");
      return;
    }
    image.dataset.retries = attempt;
    window.setTimeout(() => {
      if (image.srcset) {
        image.srcset = image.srcset.split(", ").map((candidate) => {
          const [url, size] = candidate.split(" ");
          return again(url, attempt) + " " + size;
        }).join(", ");
      }
      image.src = again(image.getAttribute("src"), attempt);
    }, 1500 * attempt);
  }, true);

  const timer = window.setInterval(async () => {
    if (!(await refresh())) window.clearInterval(timer);
  }, REFRESH_MS);
  refresh();  // learns the model card's state as drawn
  window.instafly = { refresh };  // for the browser test, and for the curious
})();
