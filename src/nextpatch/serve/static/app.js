// The web page: pick or drop images, each is POSTed to /v1/models/{name}/predict?panel=true;
// the answer's verdict, score and panel are shown, and every answer is kept in the session's history.
// "mark as normal" on a failing image POSTs it to /v1/models/{name}/feedback (label=good): the model
// absorbs it in place, saves a new version, and the image (and its like) pass from then on.
"use strict";

const $ = (id) => document.getElementById(id);
const scored = [];  // {name, model, score, is_anomalous, ms, panel, file, row} per scored image, newest last
let current = null;  // the entry shown
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
  const label = (m) => `${m.name} v${m.model_version} (${m.backend}, ${m.image_size} px` +
    (m.mask == null ? ")" : `, mask ${(100 * m.mask).toFixed(0)}% inspected)`);
  const chosen = $("model").value;
  $("model").replaceChildren(...models.map((m) => new Option(label(m), m.name)));
  if (chosen && models.some((m) => m.name === chosen)) $("model").value = chosen;
  setStatus(`${models.length} model${models.length === 1 ? "" : "s"} ready; drop images to score them`);
}

function show(entry) {
  $("result").hidden = false;
  $("verdict").textContent = entry.is_anomalous ? "FAIL" : "PASS";
  $("verdict").className = entry.is_anomalous ? "fail" : "pass";
  $("name").textContent = entry.name;
  $("score").textContent = entry.score.toFixed(3);
  $("ms").textContent = entry.ms.toFixed(0);
  $("scale").textContent = entry.scale_warning ? `warning: this image was ${entry.scale_warning}` : "";
  $("panel").src = `data:image/png;base64,${entry.panel}`;
  current = entry;
  $("accept").hidden = !entry.is_anomalous || entry.accepted;
  $("feedback").textContent = entry.accepted || "";
}

async function markNormal(entry) {
  const form = new FormData();
  form.append("file", entry.file, entry.name);
  form.append("label", "good");
  setStatus(`marking ${entry.name} as normal...`);
  const response = await fetch(`/v1/models/${encodeURIComponent(entry.model)}/feedback`,
                               { method: "POST", body: form, headers: headers() });
  if (!response.ok) { setStatus(`${entry.name}: ${response.status} ${await errorText(response)}`, true); return; }
  const f = await response.json();
  entry.accepted = `marked as normal: model ${f.model} is now version ${f.model_version}; ` +
                   `this image scores ${f.score_after.toFixed(3)} (was ${f.score_before.toFixed(3)})`;
  entry.row.children[4].textContent = "accepted";
  entry.row.children[4].className = "pass";
  entry.row.children[6].replaceChildren();
  await loadModels();
  setStatus(entry.accepted);
  if (current === entry) show(entry);
}

$("accept").addEventListener("click", () => { if (current) markNormal(current); });

function addToHistory(entry) {
  scored.push(entry);
  const row = document.createElement("tr");
  const cells = [scored.length, entry.name, entry.model, entry.score.toFixed(3),
                 entry.is_anomalous ? "FAIL" : "PASS", entry.ms.toFixed(0)];
  for (const value of cells) row.appendChild(document.createElement("td")).textContent = value;
  row.children[4].className = entry.is_anomalous ? "fail" : "pass";
  const action = row.appendChild(document.createElement("td"));
  if (entry.is_anomalous) {
    const button = action.appendChild(document.createElement("button"));
    button.type = "button";
    button.textContent = "mark as normal";
    button.addEventListener("click", (event) => { event.stopPropagation(); markNormal(entry); });
  }
  entry.row = row;
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
  const entry = { name: file.name, model: p.model, score: p.score, is_anomalous: p.is_anomalous, ms: p.ms,
                  panel: p.panel_png, scale_warning: p.scale_warning, file };
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
