// Instafly status page: send photos to the box and show what came back (no libraries).
// Uploads go one at a time through XMLHttpRequest, for its upload progress events; the gallery
// is drawn from /api/photos, newest first, and refreshed while photos are being enhanced.
"use strict";

(function () {
  const input = document.getElementById("photo-input");
  const uploads = document.getElementById("uploads");
  const gallery = document.getElementById("gallery");
  const empty = document.getElementById("gallery-empty");
  if (!input || !gallery) return;
  const token = document.querySelector('meta[name="csrf-token"]').content;
  const BUSY = new Set(["queued", "running", "waiting_model"]);
  const BUSY_REFRESH_MS = 2000;
  const IDLE_REFRESH_MS = 15000;
  let timer = null;

  function element(tag, properties, children) {
    const node = document.createElement(tag);
    Object.assign(node, properties || {});
    (children || []).forEach((child) => node.append(child));
    return node;
  }

  function signed(value) {
    return (value >= 0 ? "+" : "−") + Math.abs(value).toFixed(3);
  }

  // --- sending -----------------------------------------------------------------------------

  function send(file, row) {
    return new Promise((resolve) => {
      const request = new XMLHttpRequest();
      const form = new FormData();
      form.append("photo", file, file.name);
      request.open("POST", "/api/photos");
      request.setRequestHeader("X-CSRF-Token", token);
      request.responseType = "json";
      request.upload.addEventListener("progress", (event) => {
        if (!event.lengthComputable) return;
        row.bar.value = event.loaded / event.total;
        row.text.textContent = Math.round((100 * event.loaded) / event.total) + "%";
      });
      request.addEventListener("load", () => {
        const body = request.response || {};
        if (request.status === 202) {
          const photo = body.photos[0];
          row.bar.value = 1;
          row.item.dataset.state = "sent";
          row.text.textContent = photo.status === "queued" ? "sent" : "sent before (" + photo.status.replace("_", " ") + ")";
        } else {
          row.item.dataset.state = "error";
          row.text.textContent = body.error || "refused (" + request.status + ")";
        }
        resolve();
      });
      request.addEventListener("error", () => {
        row.item.dataset.state = "error";
        row.text.textContent = "not sent: the box did not answer";
        resolve();
      });
      request.send(form);
    });
  }

  async function sendAll(files) {
    // Tell the box a photo is coming: it starts loading the model while the photo is sent.
    fetch("/api/photos/coming", { method: "POST", headers: { "X-CSRF-Token": token } }).catch(() => {});
    const rows = Array.from(files).map((file) => {
      const bar = element("progress", { max: 1, value: 0 });
      bar.setAttribute("aria-label", "Sending " + file.name);
      const text = element("span", { className: "upload-state", textContent: "waiting" });
      const item = element("li", { className: "upload" }, [element("span", { className: "upload-name", textContent: file.name }), bar, text]);
      item.dataset.state = "waiting";
      uploads.append(item);
      return { file, bar, text, item };
    });
    for (const row of rows) {
      row.item.dataset.state = "sending";
      await send(row.file, row);
    }
    input.value = "";
    refresh();
  }

  // --- the gallery -------------------------------------------------------------------------

  const SRCSET_WIDTHS = [360, 720, 1080];  // the widths the box draws previews in (?w=)
  const SIZES = "(max-width: 40rem) calc(100vw - 3rem), 28rem";

  function preview(url, alt, className) {
    const image = element("img", { src: url, alt, className, sizes: SIZES, decoding: "async" });
    image.srcset = SRCSET_WIDTHS.map((width) => url + "?w=" + width + " " + width + "w").join(", ");
    return image;
  }

  function comparison(photo) {
    const after = preview(photo.urls.after, photo.name + ", enhanced", "compare-after");
    const before = preview(photo.urls.before, photo.name + ", before", "compare-before");
    const beforeLabel = element("span", { className: "compare-label compare-label-before", textContent: "Before" });
    const afterLabel = element("span", { className: "compare-label compare-label-after", textContent: "After" });
    beforeLabel.setAttribute("aria-hidden", "true");
    afterLabel.setAttribute("aria-hidden", "true");
    const line = element("span", { className: "compare-line" });
    line.setAttribute("aria-hidden", "true");
    const box = element("div", { className: "compare" }, [after, before, line, beforeLabel, afterLabel]);
    const slider = element("input", { type: "range", min: 0, max: 100, step: 5, value: 50, className: "compare-slider" });
    slider.setAttribute("aria-label", "Before and after of " + photo.name + ": before on the left, after on the right");
    const show = (value) => {
      box.style.setProperty("--split", value + "%");
      box.dataset.showing = value >= 100 ? "before" : value <= 0 ? "after" : "both";
      slider.setAttribute("aria-valuetext", value >= 100 ? "all before" : value <= 0 ? "all after" : value + "% before");
    };
    show(50);
    slider.addEventListener("input", () => show(Number(slider.value)));
    box.addEventListener("click", () => {  // a tap flips between all before and all after
      slider.value = Number(slider.value) >= 100 ? 0 : 100;
      show(Number(slider.value));
    });
    return element("div", { className: "compare-wrap" }, [box, slider]);
  }

  function share(photo) {
    const button = element("button", { type: "button", className: "small-button share", textContent: "Share" });
    button.addEventListener("click", async () => {
      try {
        const blob = await (await fetch(photo.urls.enhanced)).blob();
        const file = new File([blob], photo.output_name, { type: "image/jpeg" });
        if (navigator.canShare && navigator.canShare({ files: [file] })) await navigator.share({ files: [file] });
      } catch (error) {
        // The person closed the share sheet, or the browser refused: nothing to do.
      }
    });
    return button;
  }

  function retry(photo) {
    const form = element("form", { method: "post", action: "/actions/retry/" + photo.id, className: "inline" }, [
      element("input", { type: "hidden", name: "csrf_token", value: token }),
      element("button", { type: "submit", className: "small-button", textContent: "Try again" }),
    ]);
    return form;
  }

  const STATES = {
    queued: "waiting", waiting_model: "waiting for the box to learn", running: "being enhanced",
    done: "enhanced", failed: "could not be enhanced", rejected: "not a photo the box can read",
  };

  function raw(photo) {
    const lines = [];
    if (photo.score_change !== null) {
      lines.push("score (log of likes per follower) " + photo.score_before.toFixed(3) + " → " +
        photo.score_after.toFixed(3) + " (" + signed(photo.score_change) + ")");
    }
    const edits = Object.entries(photo.edits);
    if (edits.length) lines.push("edits: " + edits.map(([name, value]) => name.replace("_", " ") + " " + signed(value)).join(", "));
    if (photo.model_version !== null) lines.push("model v" + photo.model_version);
    if (!lines.length) return null;
    return element("details", { className: "raw small" }, [
      element("summary", { textContent: "Figures" }),
      element("p", { textContent: lines.join("; ") }),
    ]);
  }

  function card(photo) {
    const item = element("li", { className: "photo" });
    item.dataset.photoId = photo.id;
    item.dataset.state = photo.status;
    if (photo.urls.after && photo.urls.before) {
      item.append(comparison(photo));
    } else if (photo.urls.before) {
      item.append(element("div", { className: "compare" }, [preview(photo.urls.before, photo.name, "compare-after")]));
    }
    const text = element("div", { className: "photo-text" }, [
      element("strong", { className: "photo-name", textContent: photo.name }), " ",
      element("span", { className: "pill pill-" + photo.status, textContent: STATES[photo.status] || photo.status.replace("_", " ") }),
    ]);
    const words = photo.words || {};
    if (words.scores) {
      text.append(element("div", { className: "scores" }, [
        "Expected likes per 1,000 followers: " + words.scores.before + " → " + words.scores.after + " ",
        element("strong", { className: words.scores.up ? "up" : "down", textContent: "(" + words.scores.change + ")" }),
      ]));
    }
    if (words.edits) {
      text.append(element("div", { className: "edits", textContent: words.edits[0].toUpperCase() + words.edits.slice(1) + "." }));
    }
    if (photo.reason && photo.status !== "done") text.append(element("div", { className: "muted small reason", textContent: photo.reason }));
    const actions = element("div", { className: "photo-actions" });
    if (photo.urls.enhanced) {
      actions.append(element("a", { className: "button small-button download", href: photo.urls.enhanced, download: photo.output_name, textContent: "Download" }));
      if (navigator.canShare) actions.append(share(photo));
    }
    if (photo.status === "failed" || photo.status === "rejected") actions.append(retry(photo));
    if (actions.childElementCount) text.append(actions);
    const figures = raw(photo);
    if (figures) text.append(figures);
    item.append(text);
    return item;
  }

  async function refresh() {
    window.clearTimeout(timer);
    let busy = false;
    try {
      const response = await fetch("/api/photos", { headers: { Accept: "application/json" } });
      if (!response.ok) return;
      const photos = (await response.json()).photos;
      const shown = new Map([...gallery.children].map((item) => [item.dataset.photoId, item]));
      gallery.replaceChildren(...photos.map((photo) => {
        const old = shown.get(String(photo.id));
        return old && old.dataset.state === photo.status ? old : card(photo);  // keeps a slider where it is
      }));
      empty.hidden = photos.length > 0;
      busy = photos.some((photo) => BUSY.has(photo.status));
    } catch (error) {
      // The box may be restarting; try again later.
    }
    timer = window.setTimeout(refresh, busy ? BUSY_REFRESH_MS : IDLE_REFRESH_MS);
  }

  input.addEventListener("change", () => { if (input.files.length) sendAll(input.files); });
  refresh();
  window.instaflyPhotos = { refresh };
})();
