// payengine demo: small progressive enhancements. Every page works without this file.
"use strict";

// Re-render a server fragment every `ms` (the order status, the Inside panels, the Money page).
function live(id, ms, stopWhen) {
  const box = document.getElementById(id);
  if (!box) return;
  const url = box.dataset.live;
  async function tick() {
    try {
      const answer = await fetch(url, { headers: { Accept: "text/html" } });
      if (answer.ok) {
        const open = new Set([...box.querySelectorAll("details[open]")].map((d) => d.dataset.payment));
        box.innerHTML = await answer.text();
        box.querySelectorAll("details").forEach((d) => { d.open = open.has(d.dataset.payment) || (open.size === 0 && d === box.querySelector("details")); });
      }
    } catch (e) { /* the engine may be restarting: try again */ }
    if (!stopWhen || !stopWhen(box)) setTimeout(tick, ms);
  }
  setTimeout(tick, ms);
}

function orderFinal(box) {
  const status = box.querySelector("#payment-status");
  return status && ["COMPLETED", "FAILED", "EXPIRED", "REJECTED_BY_RISK"].includes(status.dataset.status)
    && [...box.querySelectorAll("td.status")].every((td) => td.dataset.status === "SUCCESS" || td.dataset.status === "FAILED")
    && [...box.querySelectorAll("li.refund")].every((li) => li.dataset.status === "SUCCEEDED" || li.dataset.status === "FAILED");
}

function timeline() {
  const list = document.getElementById("timeline");
  if (!list || !window.EventSource) return;
  let last = 0;
  list.querySelectorAll("li").forEach((li) => { last = Math.max(last, Number(li.dataset.seq)); });
  const source = new EventSource(list.dataset.events);
  source.onmessage = (message) => {
    const e = JSON.parse(message.data);
    if (e.seq <= last) return;
    last = e.seq;
    const li = document.createElement("li");
    li.className = "lane-" + e.lane + " fresh";
    li.dataset.seq = e.seq;
    for (const [cls, text] of [["who", e.who], ["what", e.what], ["detail", e.detail]]) {
      const span = document.createElement("span");
      span.className = cls;
      span.textContent = text;
      li.append(span, " ");
    }
    if (e.payment_id) {
      const link = document.createElement("a");
      link.className = "pay";
      link.href = "/orders/" + encodeURIComponent(e.payment_id);
      link.textContent = "order";
      li.append(link);
    }
    list.prepend(li);
    while (list.children.length > 300) list.lastChild.remove();
  };
}

function chaos() {
  document.querySelectorAll("form.chaos-form").forEach((form) => {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const said = document.getElementById("chaos-said");
      const button = form.querySelector("button");
      button.disabled = true;
      said.textContent = "…";
      try {
        const answer = await fetch(form.action, { method: "POST", headers: { Accept: "application/json" } });
        said.textContent = answer.ok ? (await answer.json()).said : "refused: " + answer.status;
      } catch (e) {
        said.textContent = "no answer: " + e;
      } finally {
        button.disabled = false;
      }
    });
  });
}

function tour() {
  const step = new URLSearchParams(location.search).get("tour");
  if (!step || !location.hash) return;
  const target = document.getElementById(location.hash.slice(1));
  if (target) {
    target.classList.add("tour-target");
    target.scrollIntoView({ block: "center" });
  }
  const banner = document.createElement("div");
  banner.className = "tour-banner";
  const back = document.createElement("a");
  back.href = "/tour#step-" + step;
  back.textContent = "Tour step " + step + ": back to the tour";
  banner.append(back);
  document.querySelector("main").prepend(banner);
}

document.addEventListener("DOMContentLoaded", () => {
  live("order-live", 500, orderFinal);
  live("inside-live", 2000);
  live("money-live", 3000);
  timeline();
  chaos();
  tour();
});
