// The set-up page's live check (no libraries): on the phone that shows the page, load the
// box's check from an Instagram host over plain HTTP (does the phone's traffic reach the box?)
// and over HTTPS (does the phone trust the box's certificate?), and show the one line that
// matches. The proxy answers the check itself; it never reaches Instagram.
"use strict";

(function () {
  const box = document.getElementById("live-check");
  if (!box) return;
  const AGAIN_MS = 3000;
  const TIMEOUT_MS = 4000;
  const VIA = { wireguard: "through WireGuard", proxy: "through the Wi-Fi proxy", transparent: "through the router" };

  async function probe(scheme) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
    try {
      const response = await fetch(scheme + ":" + box.dataset.checkUrl + "?t=" + Date.now(), {
        cache: "no-store", credentials: "omit", mode: "cors", signal: controller.signal,
      });
      if (!response.ok) return null;
      const answer = await response.json();
      return answer && answer.instafly === "check" ? answer : null;
    } catch (error) {
      return null; // not reached, not trusted, or another server: all "no"
    } finally {
      clearTimeout(timer);
    }
  }

  function show(state, answer) {
    box.dataset.state = state;
    box.querySelectorAll("[data-when]").forEach((part) => { part.hidden = part.dataset.when !== state; });
    box.querySelectorAll("[data-until-ready]").forEach((part) => { part.hidden = state === "ready"; });
    const via = box.querySelector("[data-check-via]");
    if (via && answer) via.textContent = VIA[answer.via] || "connected";
  }

  async function check() {
    const [plain, secure] = await Promise.all([probe("http"), probe("https")]);
    if (secure) {
      show("ready", secure);
      return; // done: nothing changes by itself after this
    }
    show(plain ? "untrusted" : "unreached", plain);
    setTimeout(check, AGAIN_MS);
  }

  check();
})();
