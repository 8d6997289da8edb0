// keygate portal: the token's countdown and the copy buttons. The pages
// work without this script; it only adds what a static page cannot do.
"use strict";

function fmt(seconds) {
  const m = Math.floor(seconds / 60), s = seconds % 60;
  return m + ":" + String(s).padStart(2, "0");
}

function startCountdown(el) {
  const expires = Date.parse(el.dataset.expires);
  const announce = document.getElementById("countdown-announce");
  let lastMinute = -1;
  function tick() {
    const left = Math.max(0, Math.round((expires - Date.now()) / 1000));
    if (left === 0) {
      el.textContent = "expired";
      if (announce) announce.textContent = "The token has expired. Get a new one to connect again.";
      return;
    }
    el.textContent = fmt(left) + " left";
    // Screen readers hear the time once a minute and in the last minute,
    // not every second.
    const minute = Math.ceil(left / 60);
    if (announce && minute !== lastMinute) {
      lastMinute = minute;
      announce.textContent = "The token expires in " + (minute === 1 ? "less than a minute" : minute + " minutes") + ".";
    }
    setTimeout(tick, 1000);
  }
  tick();
}

async function copy(button) {
  const source = document.getElementById(button.dataset.copy);
  const status = document.getElementById("copy-status");
  const text = "value" in source ? source.value : source.textContent;
  try {
    await navigator.clipboard.writeText(text);
    if (status) status.textContent = "Copied " + button.textContent.replace(/^Copy /, "") + " to the clipboard.";
  } catch (e) {
    if ("select" in source) source.select();
    if (status) status.textContent = "Could not copy: select the text and copy it yourself.";
  }
}

document.addEventListener("DOMContentLoaded", function () {
  const countdown = document.getElementById("countdown");
  if (countdown) startCountdown(countdown);
  for (const b of document.querySelectorAll("button[data-copy]")) {
    b.addEventListener("click", function () { copy(b); });
  }
});
