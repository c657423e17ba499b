// ggt bench review (compare mode). Plain JS, no build step; data reaches the DOM through textContent only.
"use strict";

const S = { cur: null, busy: false, blobs: [], voter: localStorage.getItem("ggt-voter") || "" };
whoAmI = () => S.voter;
const api = request;

// Images come as blobs: the API needs the token header, which an <img src> cannot send.
async function show(id, url) {
  const blob = await (await api(url)).blob();
  const src = URL.createObjectURL(blob);
  S.blobs.push(src);
  $(id).src = src;
}

async function progress() {
  const p = await (await api("/api/compare/progress")).json();
  const n = Object.entries(p.votes).map(([k, v]) => k + " " + v).join(", ") || "none yet";
  $("progress").textContent = "votes: " + n + (S.voter ? " · you " + p.you : "");
}

async function next() {
  S.cur = null;
  for (const b of S.blobs.splice(0)) URL.revokeObjectURL(b);
  const c = await (await api("/api/compare/next")).json();
  await Promise.all([show("img-lq", c.images.lq), show("img-left", c.images.left),
    show("img-right", c.images.right)]);
  S.cur = c;
  $("status").textContent = (c.category || "") + " · " + c.item_id;
  document.body.dataset.ticket = c.ticket;
}

async function vote(choice) {
  if (!S.cur || S.busy) return;
  S.busy = true;
  try {
    const r = await (await api("/api/compare/vote", { ticket: S.cur.ticket, choice: choice })).json();
    // Names only now, after the vote: who was left, who was right, and what was chosen.
    $("reveal").textContent = "previous: left " + r.left + " · right " + r.right + " · you chose " + r.choice;
    document.body.dataset.voted = String(r.id);
    await next();
    await progress();
  } catch (e) {
    $("status").textContent = "error: " + e.message;
    if (e.message.startsWith("409")) await next();
  } finally {
    S.busy = false;
  }
}

const KEYS = { ArrowLeft: "left", "1": "left", ArrowRight: "right", "2": "right", t: "tie", T: "tie", "3": "tie",
  s: "skip", S: "skip" };

document.addEventListener("keydown", (ev) => {
  if (ev.target === $("voter") || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const choice = KEYS[ev.key];
  if (choice) { ev.preventDefault(); vote(choice); }
});

$("voter").value = S.voter;
$("voter").addEventListener("change", () => {
  const v = $("voter").value.trim();
  if (v && !/^[A-Za-z0-9_.@-]{1,64}$/.test(v)) { $("status").textContent = "voter: letters, digits and _.@- only"; return; }
  S.voter = v;
  localStorage.setItem("ggt-voter", v);
  progress();
});

(async () => {
  try {
    await next();
    await progress();
    document.body.dataset.ready = "1";
  } catch (e) {
    $("status").textContent = "error: " + e.message;
  }
})();
