// What the review and compare pages share: the access token and the API call. Plain JS, no build step.
"use strict";

const $ = (id) => document.getElementById(id);

// The token arrives in the URL fragment, which browsers never send to the server; keep it for reloads
// of this tab only and take it out of the address bar.
const fragment = new URLSearchParams(location.hash.slice(1));
if (fragment.get("token")) {
  sessionStorage.setItem("ggt-token", fragment.get("token"));
  history.replaceState(null, "", location.pathname + location.search);
}
const TOKEN = sessionStorage.getItem("ggt-token") || "";

// Each page names who is deciding (a reviewer, a voter); every request carries it with the token.
let whoAmI = () => "";

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (TOKEN) h["X-GGT-Token"] = TOKEN;
  if (whoAmI()) h["X-GGT-Reviewer"] = whoAmI();
  return h;
}

// GET (no body) or POST JSON; the response, or an Error carrying the status and the server's detail.
async function request(path, body) {
  const opts = body === undefined ? { headers: headers() }
    : { method: "POST", headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify(body) };
  const res = await fetch(path, opts);
  if (!res.ok) {
    let msg = res.status + "";
    try { msg += " " + (await res.json()).detail; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  return res;
}
