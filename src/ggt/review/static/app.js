// ggt review page. Plain JS, no build step. All data goes into the DOM through textContent, never as HTML.
"use strict";

const TAGS = ["hallucination", "misalignment", "colour_shift", "residual_degradation", "artefacts", "other"];
const S = {
  items: [], idx: -1, next: null, detail: null, reviewer: localStorage.getItem("ggt-reviewer") || "",
  mode: "side", scale: 1, tx: 0, ty: 0, full: false, flicker: null, blobs: [], loads: 0,
  picking: false, chosen: new Set(), busy: false,
};
whoAmI = () => S.reviewer;

async function api(path, body) {
  return (await request(path, body)).json();
}

function status(text) { $("status").textContent = text; }

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

function fill(select, values) {
  for (const v of values) select.appendChild(el("option", v)).value = v;
}

// -- queue -------------------------------------------------------------------------------------------
function queueParams() {
  const p = new URLSearchParams();
  for (const [key, id] of [["verdict", "f-verdict"], ["category", "f-category"], ["generator", "f-generator"],
    ["rule", "f-rule"]]) if ($(id).value) p.set(key, $(id).value);
  const metric = $("f-metric").value;
  if (metric) {
    if ($("f-min").value !== "") p.append("metric_min", metric + ":" + $("f-min").value);
    if ($("f-max").value !== "") p.append("metric_max", metric + ":" + $("f-max").value);
    if ($("f-sort").value) { p.set("sort", metric); if ($("f-sort").value === "desc") p.set("desc", "true"); }
  }
  if ($("f-pending").checked) p.set("pending", "true");
  p.set("limit", "50");
  return p;
}

async function loadQueue(reset) {
  const p = queueParams();
  if (!reset && S.next) p.set("cursor", S.next);
  const page = await api("/api/queue?" + p.toString());
  if (reset) { S.items = []; S.idx = -1; $("list").textContent = ""; }
  for (const it of page.items) { S.items.push(it); $("list").appendChild(row(it, S.items.length - 1)); }
  S.next = page.next;
  $("more").hidden = !S.next;
  if (reset) { if (S.items.length) await select(0); else { clearView(); status("queue empty"); } }
}

function decisionOf(it) {
  const d = it.decision;
  if (!d || d.decision === "undecided") return ["undecided", ""];
  return [d.decision, d.reviewer === "policy" ? "" : d.reviewer];
}

function row(it, i) {
  const li = el("li");
  li.dataset.i = i;
  fillRow(li, it);
  li.addEventListener("click", () => select(Number(li.dataset.i)));
  return li;
}

function fillRow(li, it) {
  li.textContent = "";
  li.appendChild(el("span", it.verdict, "badge " + it.verdict));
  li.appendChild(el("span", it.item_id.slice(0, 10)));
  const [dec, who] = decisionOf(it);
  if (who) li.appendChild(el("span", dec === "keep" ? "✓" : "✗", "mine")).title = dec + " by " + who;
  li.title = it.variant + " · " + (it.category || "");
}

// -- one pair ----------------------------------------------------------------------------------------
async function select(i) {
  if (i < 0 || i >= S.items.length) return;
  S.idx = i;
  for (const li of $("list").children) li.classList.toggle("cur", Number(li.dataset.i) === i);
  $("list").children[i].scrollIntoView({ block: "nearest" });
  const it = S.items[i];
  const q = "variant=" + encodeURIComponent(it.variant);
  const detail = await api("/api/pair/" + it.item_id + "?" + q);
  it.decision = detail.decision;
  fillRow($("list").children[i], it);
  if (S.idx !== i) return;  // the reviewer moved on while this loaded
  S.detail = detail;
  showInfo(detail);
  await loadImages();
}

async function blobUrl(path) {
  return URL.createObjectURL(await (await request(path)).blob());
}

async function loadImages() {
  // Loads overlap when the reviewer moves on quickly; only the latest may fill the view, or a slow
  // answer for an item already left would show its pictures under the next item's title.
  const seq = ++S.loads;
  const it = S.items[S.idx];
  const q = "?variant=" + encodeURIComponent(it.variant) + (S.full ? "&full=true" : "");
  status(S.full ? "loading full resolution…" : "");
  const urls = await Promise.all([blobUrl("/api/image/" + it.item_id + "/lq" + q),
    blobUrl("/api/image/" + it.item_id + "/hq" + q)]);
  if (seq !== S.loads) {
    for (const u of urls) URL.revokeObjectURL(u);
    return;
  }
  const [lq, hq] = urls;
  $("img-lq").src = lq; $("over-lq").src = lq; $("img-hq").src = hq; $("over-hq").src = hq;
  $("img-hq").dataset.item = it.item_id; $("img-hq").dataset.variant = it.variant;
  for (const u of S.blobs) URL.revokeObjectURL(u);  // the pictures just replaced
  S.blobs = urls;
  await Promise.all(["img-lq", "img-hq"].map((id) => $(id).decode().catch(() => null)));
  if (!S.full) fit();
  applyTransform();
  status(S.full ? "full resolution" : "");
}

function clearView() {
  for (const id of ["img-lq", "img-hq", "over-lq", "over-hq"]) $(id).removeAttribute("src");
  for (const id of ["i-title", "i-decision", "i-verdict", "i-judge", "i-prompt", "i-rules", "i-report",
    "i-metrics", "i-history"]) $(id).textContent = "";
}

function showInfo(d) {
  $("i-title").textContent = d.item_id + " · " + d.variant;
  const dec = d.decision;
  $("i-decision").textContent = dec ? "now: " + dec.decision + " (" + dec.reviewer + ")" +
    (dec.reasons.length ? " — " + dec.reasons.join(", ") : "") : "now: undecided";
  $("i-verdict").textContent = (d.verdict || "—") + " · " + (d.category || "") + " · " + d.size.join("×");
  $("i-rules").textContent = "";
  for (const r of d.reasons) $("i-rules").appendChild(el("li", r));
  const j = d.judge;
  $("i-judge").textContent = j ? (d.judge_name || "") + ": " + (j.verdict || "") +
    (j.explanation ? " — " + j.explanation : "") : "none";
  $("i-prompt").textContent = d.prompt || "—";
  $("i-report").textContent = "";
  const rep = d.report || {};
  if (rep.category) $("i-report").appendChild(el("li", "category: " + rep.category));
  for (const g of rep.degradations || []) $("i-report").appendChild(el("li", g.type + " " + Number(g.severity).toFixed(2)));
  $("i-metrics").textContent = "";
  for (const [k, v] of Object.entries(d.metrics || {})) {
    const tr = el("tr");
    tr.appendChild(el("td", k));
    tr.appendChild(el("td", typeof v === "number" ? v.toFixed(4) : String(v)));
    $("i-metrics").appendChild(tr);
  }
  $("i-history").textContent = "";
  for (const h of d.history) {
    $("i-history").appendChild(el("li", h.reviewer + ": " + h.decision + (h.reasons.length ? " [" +
      h.reasons.join(", ") + "]" : "") + (h.note ? " — " + h.note : "")));
  }
}

// -- zoom, pan, views --------------------------------------------------------------------------------
function fit() {
  const img = $("img-lq"), pane = S.mode === "side" ? $("pane-lq") : $("pane-over");
  if (!img.naturalWidth || !pane.clientWidth) return;
  S.scale = Math.min(pane.clientWidth / img.naturalWidth, pane.clientHeight / img.naturalHeight);
  S.tx = (pane.clientWidth - img.naturalWidth * S.scale) / 2;
  S.ty = (pane.clientHeight - img.naturalHeight * S.scale) / 2;
}

// One transform for every image: LQ and HQ always show the same region (HQ is LQ's size, or scaled to it).
function applyTransform() {
  const w = $("img-lq").naturalWidth;
  for (const id of ["img-lq", "img-hq", "over-lq", "over-hq"]) {
    const img = $(id);
    const k = img.naturalWidth && w ? S.scale * (w / img.naturalWidth) : S.scale;
    img.style.transform = "translate(" + S.tx + "px," + S.ty + "px) scale(" + k + ")";
  }
  $("stage").classList.toggle("pixelated", S.scale > 2);
  split();
}

function split() {
  const pane = $("pane-over");
  const x = pane.clientWidth * $("split").value / 100;
  $("over-top").style.clipPath = "inset(0 0 0 " + x + "px)";
}

function setMode(mode) {
  S.mode = mode;
  const side = mode === "side";
  $("pane-lq").hidden = !side; $("pane-hq").hidden = !side; $("pane-over").hidden = side;
  $("stage").className = side ? "side" : "slider";
  fit(); applyTransform();
}

function toggleFlicker() {
  if (S.flicker) { clearInterval(S.flicker); S.flicker = null; $("split").value = 50; $("over-tag").textContent = "LQ | HQ"; split(); return; }
  if (S.mode !== "slider") setMode("slider");
  let showHq = true;
  S.flicker = setInterval(() => {
    showHq = !showHq;
    $("split").value = showHq ? 0 : 100;
    $("over-tag").textContent = showHq ? "HQ" : "LQ";
    split();
  }, 450);
}

function bindPan(pane) {
  let drag = null;
  pane.addEventListener("wheel", (e) => {
    e.preventDefault();
    const r = pane.getBoundingClientRect(), mx = e.clientX - r.left, my = e.clientY - r.top;
    const k = Math.exp(-e.deltaY * 0.0015);
    S.tx = mx - (mx - S.tx) * k; S.ty = my - (my - S.ty) * k; S.scale *= k;
    applyTransform();
  }, { passive: false });
  pane.addEventListener("pointerdown", (e) => {
    if (e.target.id === "split") return;
    drag = { x: e.clientX, y: e.clientY, tx: S.tx, ty: S.ty }; pane.setPointerCapture(e.pointerId);
  });
  pane.addEventListener("pointermove", (e) => {
    if (!drag) return;
    S.tx = drag.tx + e.clientX - drag.x; S.ty = drag.ty + e.clientY - drag.y; applyTransform();
  });
  pane.addEventListener("pointerup", () => { drag = null; });
}

// -- decisions ---------------------------------------------------------------------------------------
async function decide(decision, reasons, note) {
  const it = S.items[S.idx];
  if (!it || S.busy) return;
  // A decision is about the pictures on screen: none while the last pair's still stand in for this one's.
  const shown = $("img-hq").dataset;
  if (shown.item !== it.item_id || shown.variant !== it.variant) {
    status("this pair's pictures are still loading: nothing saved");
    return;
  }
  S.busy = true;
  try {
    await api("/api/decision", { item_id: it.item_id, variant: it.variant, decision, reasons, note: note || null });
    it.decision = { decision, reviewer: S.reviewer || "you", reasons };
    fillRow($("list").children[S.idx], it);
    status(decision + " saved");
  } catch (e) { status("not saved: " + e.message); return; } finally { S.busy = false; }
  // Only the write is guarded: the next pair may load while the reviewer already presses the next key.
  refreshProgress();
  await move(1);
}

async function undo() {
  if (S.busy) return;
  S.busy = true;
  try {
    const r = await api("/api/undo", {});
    const i = S.items.findIndex((x) => x.item_id === r.item_id && x.variant === r.variant);
    status("undone #" + r.undone);
    S.busy = false;
    refreshProgress();
    if (i >= 0) await select(i);
  } catch (e) { status("nothing to undo: " + e.message); } finally { S.busy = false; }
}

async function move(step) {
  const i = S.idx + step;
  if (i >= S.items.length && S.next) await loadQueue(false);
  if (i >= 0 && i < S.items.length) await select(i);
}

function openPicker() {
  S.picking = true; S.chosen = new Set(); $("note").value = ""; $("picker").hidden = false; drawTags();
}
function closePicker() { S.picking = false; $("picker").hidden = true; $("note").blur(); }
function drawTags() {
  $("tags").textContent = "";
  TAGS.forEach((t, i) => $("tags").appendChild(el("li", t.replace("_", " "), S.chosen.has(t) ? "on" : "")));
}
function submitReject() {
  const reasons = TAGS.filter((t) => S.chosen.has(t));
  const note = $("note").value.trim();
  if (S.chosen.has("other") && !note) { $("note").focus(); status("'other' needs a note"); return; }
  closePicker();
  decide("reject", reasons, note);
}

function onKey(e) {
  if (S.picking) {
    if (e.key === "Escape") { closePicker(); e.preventDefault(); return; }
    if (e.key === "Enter") { submitReject(); e.preventDefault(); return; }
    if (document.activeElement === $("note")) return;
    const m = /^Digit([1-6])$/.exec(e.code);
    if (m) {
      e.preventDefault();
      const tag = TAGS[Number(m[1]) - 1];
      if (e.shiftKey) { S.chosen.has(tag) ? S.chosen.delete(tag) : S.chosen.add(tag); drawTags(); return; }
      S.chosen.add(tag); drawTags();
      if (tag === "other") { $("note").focus(); return; }
      submitReject();
    }
    return;
  }
  const t = e.target;
  if (t && (t.tagName === "INPUT" && t.type !== "range" && t.type !== "checkbox" || t.tagName === "SELECT")) return;
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const k = e.key.toLowerCase();
  const actions = {
    a: () => decide("keep", [], null), r: openPicker, s: () => move(1), u: undo,
    arrowright: () => move(1), arrowdown: () => move(1), arrowleft: () => move(-1), arrowup: () => move(-1),
    v: () => setMode(S.mode === "side" ? "slider" : "side"), f: toggleFlicker,
    h: () => { S.full = !S.full; loadImages(); }, 0: () => { fit(); applyTransform(); },
  };
  if (actions[k]) { e.preventDefault(); actions[k](); }
}

async function refreshProgress() {
  const p = await api("/api/progress");
  const me = p.reviewers[S.reviewer] || { decisions: 0 };
  const others = Object.entries(p.reviewers).map(([n, v]) => n + " " + v.decisions).join(", ");
  $("progress").textContent = "pairs " + p.pairs + " (review " + (p.verdicts.review || 0) + ") · you " +
    me.decisions + (others ? " · all: " + others : "");
}

async function start() {
  const who = await api("/api/whoami");
  if (!S.reviewer) S.reviewer = who.reviewer;
  $("reviewer").value = S.reviewer;
  $("run").textContent = who.run;
  const f = await api("/api/facets");
  fill($("f-verdict"), f.verdicts); fill($("f-category"), f.categories); fill($("f-generator"), f.generators);
  fill($("f-rule"), f.rules); fill($("f-metric"), f.metrics);
  $("filters").addEventListener("submit", (e) => { e.preventDefault(); loadQueue(true); });
  $("reviewer").addEventListener("change", () => {
    S.reviewer = $("reviewer").value.trim(); localStorage.setItem("ggt-reviewer", S.reviewer); refreshProgress();
  });
  $("more").addEventListener("click", () => loadQueue(false));
  $("b-side").addEventListener("click", () => setMode("side"));
  $("b-slider").addEventListener("click", () => setMode("slider"));
  $("b-flicker").addEventListener("click", toggleFlicker);
  $("b-full").addEventListener("click", () => { S.full = !S.full; loadImages(); });
  $("b-reset").addEventListener("click", () => { fit(); applyTransform(); });
  $("split").addEventListener("input", split);
  for (const id of ["pane-lq", "pane-hq", "pane-over"]) bindPan($(id));
  window.addEventListener("resize", () => { fit(); applyTransform(); });
  document.addEventListener("keydown", onKey);
  await refreshProgress();
  await loadQueue(true);
  document.body.dataset.ready = "1";
}

start().catch((e) => status("error: " + e.message));
