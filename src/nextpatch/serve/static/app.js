// The web page: pick or drop images, each is POSTed to /v1/models/{name}/predict?panel=true;
// the answer's verdict, score and panel are shown, and every answer is kept in the session's history.
"use strict";

const $ = (id) => document.getElementById(id);
const scored = [];  // {name, model, score, is_anomalous, ms, panel} per scored image, newest last
$("key").value = sessionStorage.getItem("nextpatch-key") || "";
$("key").addEventListener("change", () => { sessionStorage.setItem("nextpatch-key", $("key").value); loadModels(); });

function headers() {
  const key = $("key").value.trim();
  return key ? { "X-API-Key": key } : {};
}

function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "muted";
}

async function errorText(response) {
  try { return (await response.json()).detail || response.statusText; } catch { return response.statusText; }
}

async function loadModels() {
  const response = await fetch("/v1/models", { headers: headers() });
  if (!response.ok) { setStatus(`models: ${response.status} ${await errorText(response)}`, true); return; }
  const { models } = await response.json();
  $("model").replaceChildren(...models.map((m) => new Option(`${m.name} (${m.backend}, ${m.image_size} px)`, m.name)));
  setStatus(`${models.length} model${models.length === 1 ? "" : "s"} ready; drop images to score them`);
}

function show(entry) {
  $("result").hidden = false;
  $("verdict").textContent = entry.is_anomalous ? "FAIL" : "PASS";
  $("verdict").className = entry.is_anomalous ? "fail" : "pass";
  $("name").textContent = entry.name;
  $("score").textContent = entry.score.toFixed(3);
  $("ms").textContent = entry.ms.toFixed(0);
  $("panel").src = `data:image/png;base64,${entry.panel}`;
}

function addToHistory(entry) {
  scored.push(entry);
  const row = document.createElement("tr");
  const cells = [scored.length, entry.name, entry.model, entry.score.toFixed(3),
                 entry.is_anomalous ? "FAIL" : "PASS", entry.ms.toFixed(0)];
  for (const value of cells) row.appendChild(document.createElement("td")).textContent = value;
  row.children[4].className = entry.is_anomalous ? "fail" : "pass";
  row.addEventListener("click", () => show(entry));
  document.querySelector("#history tbody").prepend(row);
}

async function score(file) {
  const model = $("model").value;
  if (!model) { setStatus("no model to score with", true); return; }
  const form = new FormData();
  form.append("file", file, file.name);
  setStatus(`scoring ${file.name}...`);
  const url = `/v1/models/${encodeURIComponent(model)}/predict?panel=true`;
  let response;
  for (;;) {  // a full queue answers 503 with Retry-After: wait and send again
    response = await fetch(url, { method: "POST", body: form, headers: headers() });
    if (response.status !== 503) break;
    const wait = Number(response.headers.get("Retry-After")) || 1;
    setStatus(`server busy; retrying ${file.name} in ${wait} s`);
    await new Promise((resolve) => setTimeout(resolve, wait * 1000));
  }
  if (!response.ok) { setStatus(`${file.name}: ${response.status} ${await errorText(response)}`, true); return; }
  const p = await response.json();
  const entry = { name: file.name, model: p.model, score: p.score, is_anomalous: p.is_anomalous, ms: p.ms, panel: p.panel_png };
  show(entry);
  addToHistory(entry);
  setStatus(`${scored.length} image${scored.length === 1 ? "" : "s"} scored this session`);
}

async function scoreAll(files) {
  for (const file of files) await score(file);
}

$("file").addEventListener("change", (event) => { scoreAll([...event.target.files]); event.target.value = ""; });
const drop = $("drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  scoreAll([...event.dataTransfer.files]);
});
loadModels().catch((err) => setStatus(`cannot reach the server: ${err}`, true));
