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
    const rows = Array.from(files).map((file) => {
      const bar = element("progress", { max: 1, value: 0 });
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

  function comparison(photo) {
    const after = element("img", { src: photo.urls.after, alt: photo.name + " enhanced", className: "compare-after" });
    const before = element("img", { src: photo.urls.before, alt: photo.name + " before", className: "compare-before" });
    const slider = element("input", { type: "range", min: 0, max: 100, value: 50, className: "compare-slider" });
    slider.setAttribute("aria-label", "Compare before and after");
    const box = element("div", { className: "compare" }, [after, before, slider]);
    const show = (value) => box.style.setProperty("--split", value + "%");
    show(50);
    slider.addEventListener("input", () => show(slider.value));
    box.addEventListener("click", (event) => {  // a tap flips between all before and all after
      if (event.target === slider) return;
      slider.value = Number(slider.value) > 50 ? 0 : 100;
      show(slider.value);
    });
    return box;
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

  function card(photo) {
    const item = element("li", { className: "photo" });
    item.dataset.photoId = photo.id;
    item.dataset.state = photo.status;
    if (photo.urls.after && photo.urls.before) {
      item.append(comparison(photo));
    } else if (photo.urls.before) {
      item.append(element("div", { className: "compare" }, [element("img", { src: photo.urls.before, alt: photo.name, className: "compare-after" })]));
    }
    const text = element("div", { className: "photo-text" }, [
      element("strong", { textContent: photo.name }), " ",
      element("span", { className: "pill pill-" + photo.status, textContent: photo.status.replace("_", " ") }),
    ]);
    if (photo.score_change !== null) {
      text.append(element("div", { className: "scores" }, [
        "score " + photo.score_before.toFixed(3) + " → " + photo.score_after.toFixed(3) + " ",
        element("strong", { className: photo.score_change >= 0 ? "up" : "down", textContent: signed(photo.score_change) }),
      ]));
    }
    const edits = Object.entries(photo.edits);
    if (edits.length) {
      text.append(element("div", { className: "edits small", textContent: "Edits: " + edits.map(([name, value]) => name.replace("_", " ") + " " + signed(value)).join(", ") }));
    }
    if (photo.reason && photo.status !== "done") text.append(element("div", { className: "muted small", textContent: photo.reason }));
    if (photo.urls.enhanced) {
      const actions = element("div", { className: "photo-actions" }, [
        element("a", { className: "button small-button download", href: photo.urls.enhanced, download: photo.output_name, textContent: "Download" }),
      ]);
      if (navigator.canShare) actions.append(share(photo));
      text.append(actions);
    }
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
