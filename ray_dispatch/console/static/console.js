// ray_dispatch console: refresh parts of a page, and act on failure records through the JSON API.
// The browser carries the console's token in a cookie set when the page was opened with ?token=.
"use strict";

async function getJSON(url) {
  const answer = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  if (!answer.ok) throw new Error(`${url}: HTTP ${answer.status}`);
  return answer.json();
}

async function postJSON(url, body) {
  const answer = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    credentials: "same-origin",
    body: JSON.stringify(body),
  });
  const data = await answer.json().catch(() => ({ error: `HTTP ${answer.status}` }));
  if (!answer.ok) throw new Error(data.error || `HTTP ${answer.status}`);
  return data;
}

// The topology picture: swap in a fresh SVG from /api/topology every few seconds.
function refreshTopology(box) {
  const every = parseFloat(box.dataset.every || "2") * 1000;
  const tick = async () => {
    try {
      const data = await getJSON(box.dataset.refresh);
      box.innerHTML = data.svg;
      box.dataset.updated = String(Date.now());
    } catch (err) {
      box.dataset.error = String(err);
    }
    setTimeout(tick, every);
  };
  setTimeout(tick, every);
}

// A [data-live] region: fetch this page again and swap in the same region (one renderer: the server's).
async function reloadLive() {
  const answer = await fetch(location.href, { credentials: "same-origin" });
  if (!answer.ok) return;
  const fresh = new DOMParser().parseFromString(await answer.text(), "text/html");
  const regions = document.querySelectorAll("[data-live]");
  const replacements = fresh.querySelectorAll("[data-live]");
  regions.forEach((region, i) => {
    if (!replacements[i]) return;
    const picked = new Set([...region.querySelectorAll("input.pick:checked")].map((box) => box.value));
    region.innerHTML = replacements[i].innerHTML;
    region.querySelectorAll("input.pick").forEach((box) => { box.checked = picked.has(box.value); });
  });
}

function refreshLive(region) {
  const every = parseFloat(region.dataset.live || "5") * 1000;
  const tick = async () => {
    try { await reloadLive(); } catch (err) { region.dataset.error = String(err); }
    setTimeout(tick, every);
  };
  setTimeout(tick, every);
}

function showResult(text, failed) {
  const box = document.getElementById("result");
  if (!box) return;
  box.textContent = text;
  box.classList.toggle("error", Boolean(failed));
}

function selectedIds() {
  return [...document.querySelectorAll("input.pick:checked")].map((box) => box.value);
}

function describeReplay(data) {
  const lines = data.results.map((r) => {
    if (r.error) return `${r.failure_id.slice(0, 12)}: not replayed (${r.error})`;
    if (r.failures.length) return `${r.failure_id.slice(0, 12)}: failed again (${r.failures.join("; ")})`;
    return `${r.failure_id.slice(0, 12)}: delivered to ${r.destinations.join(", ") || "nowhere"}`;
  });
  return `replayed ${data.results.length}, delivered ${data.delivered}: ${lines.join(" · ")}`;
}

async function replay(ids) {
  if (!ids.length) return showResult("select the records to replay first", true);
  if (!confirm(`Replay ${ids.length} failure record(s)? Their messages are routed again.`)) return;
  const chosen = document.getElementById("replay-endpoint");
  const endpoint = chosen && chosen.value ? chosen.value : null;
  try {
    const data = await postJSON("/api/failures/replay", { failure_ids: ids, endpoint });
    showResult(describeReplay(data), data.delivered < data.results.length);
    await reloadLive();
  } catch (err) {
    showResult(`replay refused: ${err.message}`, true);
  }
}

async function purge(ids, all) {
  const what = all ? "EVERY failure record" : `${ids.length} failure record(s)`;
  if (!all && !ids.length) return showResult("select the records to purge first", true);
  if (!confirm(`Purge ${what}? Their messages are gone for good.`)) return;
  try {
    const data = await postJSON("/api/failures/purge", all ? { all: true } : { failure_ids: ids });
    showResult(`purged ${data.purged} failure record(s)`, false);
    await reloadLive();
  } catch (err) {
    showResult(`purge refused: ${err.message}`, true);
  }
}

async function preview() {
  const box = document.getElementById("preview-result");
  const text = document.getElementById("preview-yaml").value;
  box.textContent = "previewing...";
  try {
    const data = await postJSON("/api/config/preview", { yaml: text });
    box.textContent = data.text;
    box.classList.remove("error");
  } catch (err) {
    box.textContent = `preview refused: ${err.message}`;
    box.classList.add("error");
  }
}

document.addEventListener("click", (event) => {
  const target = event.target;
  if (!(target instanceof HTMLElement)) return;
  if (target.id === "preview") return void preview();
  if (target.classList.contains("replay-one")) replay([target.dataset.ids]);
  else if (target.classList.contains("purge-one")) purge([target.dataset.ids], false);
  else if (target.id === "replay-selected") replay(selectedIds());
  else if (target.id === "purge-selected") purge(selectedIds(), false);
  else if (target.id === "purge-all") purge([], true);
  else if (target.id === "pick-all") {
    document.querySelectorAll("input.pick").forEach((box) => { box.checked = target.checked; });
  }
});

document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("topology");
  if (box) refreshTopology(box);
  document.querySelectorAll("[data-live]").forEach(refreshLive);
});
