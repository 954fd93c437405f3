// The live trending page: rankings per window (WatchTopItems), like buttons
// with live counts (WatchCounts), the signed-in user's follow counts
// (GetUserStats) and the gateway's API statistics (ApiStats).

import { Code } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { apiBase, describe, newClients, type Problem } from "./api";
import { byId, el, formatCount, setText } from "./dom";
import { runLive, sleep, type Live, type LiveState } from "./live";
import * as session from "./session";
import { StatsWindow, Window, type RankedItem } from "./gen/highgopress/analytics/v1/analytics_pb";
import { ItemRefSchema, type ItemCount } from "./gen/highgopress/counter/v1/counter_pb";

// The id rules of the counter (proto/highgopress/counter/v1/counter.proto).
const namespacePattern = /^[a-z0-9_-]{1,32}$/;
const itemPattern = /^[A-Za-z0-9_.:-]{1,128}$/;
const rankingLimit = 10;
// Polling periods: counts when the server has no WatchCounts (often enough
// that a like made elsewhere shows within a second), follow counts, stats.
const countsPollMs = 400;
const userStatsPollMs = 5000;
const apiStatsPollMs = 2000;

const windows: ReadonlyArray<{ w: Window; label: string; phrase: string }> = [
  { w: Window.HOUR, label: "Last hour", phrase: "this hour" },
  { w: Window.DAY, label: "Last 24 hours", phrase: "today" },
  { w: Window.WEEK, label: "Last 7 days", phrase: "this week" },
  { w: Window.ALL_TIME, label: "All time", phrase: "in all" },
];

interface Row {
  li: HTMLLIElement;
  rank: HTMLSpanElement;
  score: HTMLSpanElement;
  likes: HTMLSpanElement;
  button: HTMLButtonElement;
  // liked is what the button shows: the server's answer, or the wish of a
  // click still on its way.
  liked: boolean;
  // queue serialises this item's like and unlike calls in click order.
  queue: Promise<void>;
}

// A #token=... fragment (the standalone mode's link) signs in at once.
session.takeTokenFromURL();

const state = {
  session: session.load(),
  namespace: "article",
  window: Window.HOUR,
  ranking: [] as RankedItem[],
  opened: [] as string[],
  counts: new Map<string, { likes: bigint; viewerLiked?: boolean }>(),
  rows: new Map<string, Row>(),
};

const clients = newClients(apiBase(), () => state.session?.token);

// ---------------------------------------------------------------- notices

const notice = byId<HTMLDivElement>("notice");
let noticeTimer: ReturnType<typeof setTimeout> | undefined;

function showNotice(text: string, kind: Problem["kind"] | "info"): void {
  setText(notice, text);
  notice.dataset["kind"] = kind;
  notice.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => {
    notice.hidden = true;
  }, 8000);
}

function showProblem(p: Problem): void {
  showNotice(p.message, p.kind);
  if (p.kind === "signed-out" && state.session !== undefined) {
    signOut();
  }
}

function showStatus(target: HTMLElement, s: LiveState, liveText: string): void {
  target.dataset["state"] = s.state;
  switch (s.state) {
    case "connecting":
      setText(target, "Connecting…");
      break;
    case "live":
      setText(target, liveText);
      break;
    case "retrying":
      setText(target, `${s.problem.message} Next attempt in ${(s.delayMs / 1000).toFixed(1)} s.`);
      break;
    case "unsupported":
      setText(target, s.problem.message);
      break;
  }
}

// ---------------------------------------------------------------- account

const who = byId<HTMLSpanElement>("who");
const signInForm = byId<HTMLFormElement>("sign-in");
const tokenInput = byId<HTMLInputElement>("token-input");
const signOutButton = byId<HTMLButtonElement>("sign-out");

function renderAccount(): void {
  const s = state.session;
  if (s === undefined) {
    setText(who, "Not signed in");
    signInForm.hidden = false;
    signOutButton.hidden = true;
  } else {
    setText(who, `Signed in as ${s.subject === "" ? "(unknown user)" : s.subject}`);
    signInForm.hidden = true;
    signOutButton.hidden = false;
  }
  renderUserStats(undefined);
}

function signOut(): void {
  session.clear();
  state.session = undefined;
  for (const c of state.counts.values()) {
    c.viewerLiked = undefined;
  }
  renderAccount();
  renderRows();
}

signInForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const token = tokenInput.value.trim();
  tokenInput.value = "";
  if (!session.looksLikeJWT(token)) {
    showNotice("That is not a token: paste the whole token (three parts separated by dots).", "invalid");
    return;
  }
  session.store(token);
  state.session = session.load();
  renderAccount();
  showNotice("Signed in.", "info");
  void refreshUserStats();
  void refreshCounts();
});

signOutButton.addEventListener("click", () => {
  signOut();
  showNotice("Signed out.", "info");
});

// ---------------------------------------------------------------- follow counts

const followers = byId<HTMLElement>("followers");
const following = byId<HTMLElement>("following");
const userStatus = byId<HTMLParagraphElement>("user-status");

function renderUserStats(st: { followers: bigint; following: bigint } | undefined): void {
  setText(followers, st === undefined ? "–" : formatCount(st.followers));
  setText(following, st === undefined ? "–" : formatCount(st.following));
  if (state.session === undefined) {
    setText(userStatus, "Sign in to see your follow counts.");
  }
}

async function refreshUserStats(): Promise<void> {
  const s = state.session;
  if (s === undefined) {
    return;
  }
  try {
    const res = await clients.follow.getUserStats({ userIds: [s.subject] });
    if (state.session !== s) {
      return;
    }
    const st = res.stats[0];
    renderUserStats(st === undefined ? undefined : { followers: st.followers, following: st.following });
    setText(userStatus, "");
    userStatus.dataset["state"] = "live";
  } catch (err) {
    const p = describe(err, "loading your follow counts");
    userStatus.dataset["state"] = p.kind;
    setText(userStatus, p.message);
    if (p.kind === "signed-out") {
      showProblem(p);
    }
  }
}

// ---------------------------------------------------------------- items

const rankingList = byId<HTMLOListElement>("ranking");
const openedList = byId<HTMLUListElement>("opened");
const rankingStatus = byId<HTMLParagraphElement>("ranking-status");
const countsStatus = byId<HTMLParagraphElement>("counts-status");
const rankingEmpty = byId<HTMLParagraphElement>("ranking-empty");

function windowPhrase(): string {
  return windows.find((x) => x.w === state.window)?.phrase ?? "";
}

function rowFor(id: string): Row {
  let row = state.rows.get(id);
  if (row !== undefined) {
    return row;
  }
  const li = el("li", "item");
  li.dataset["item"] = id;
  const rank = el("span", "rank");
  const name = el("span", "item-id", id);
  const score = el("span", "score");
  const likes = el("span", "likes");
  const button = el("button", "like");
  button.type = "button";
  li.append(rank, name, score, likes, button);
  row = { li, rank, score, likes, button, liked: false, queue: Promise.resolve() };
  const r = row;
  button.addEventListener("click", () => toggleLike(id, r));
  state.rows.set(id, row);
  return row;
}

function displayed(): string[] {
  const ids = state.ranking.map((r) => r.itemId);
  for (const id of state.opened) {
    if (!ids.includes(id)) {
      ids.push(id);
    }
  }
  return ids;
}

function renderRows(): void {
  const ranked = new Map(state.ranking.map((r) => [r.itemId, r]));
  const keep = new Set(displayed());
  for (const [id, row] of state.rows) {
    if (!keep.has(id)) {
      row.li.remove();
      state.rows.delete(id);
    }
  }
  for (const r of state.ranking) {
    rankingList.append(renderRow(r.itemId, r));
  }
  for (const id of state.opened) {
    if (!ranked.has(id)) {
      openedList.append(renderRow(id, undefined));
    }
  }
  rankingEmpty.hidden = state.ranking.length > 0 || rankingStatus.dataset["state"] !== "live";
}

function renderRow(id: string, ranked: RankedItem | undefined): HTMLLIElement {
  const row = rowFor(id);
  setText(row.rank, ranked === undefined ? "" : `#${ranked.rank}`);
  setText(row.score, ranked === undefined ? "" : `${ranked.score >= 0n ? "+" : ""}${formatCount(ranked.score)} ${windowPhrase()}`);
  const c = state.counts.get(id);
  setText(row.likes, c === undefined ? "… likes" : `${formatCount(c.likes)} ${c.likes === 1n ? "like" : "likes"}`);
  row.li.dataset["likes"] = c === undefined ? "" : c.likes.toString();
  if (c?.viewerLiked !== undefined && !pending(row)) {
    row.liked = c.viewerLiked;
  }
  setText(row.button, row.liked ? "Unlike" : "Like");
  row.button.setAttribute("aria-pressed", String(row.liked));
  return row.li;
}

const inFlight = new WeakMap<Row, number>();
function pending(row: Row): boolean {
  return (inFlight.get(row) ?? 0) > 0;
}

function applyCounts(list: ItemCount[], withViewer: boolean): void {
  for (const c of list) {
    const id = c.item?.id;
    if (id === undefined || c.item?.namespace !== state.namespace) {
      continue;
    }
    const prev = state.counts.get(id);
    state.counts.set(id, { likes: c.likes, viewerLiked: withViewer ? c.viewerLiked : prev?.viewerLiked });
  }
  renderRows();
}

function toggleLike(id: string, row: Row): void {
  if (state.session === undefined) {
    showNotice("Sign in to like items: paste your token above.", "signed-out");
    tokenInput.focus();
    return;
  }
  const like = !row.liked;
  row.liked = like;
  inFlight.set(row, (inFlight.get(row) ?? 0) + 1);
  renderRows();
  const item = create(ItemRefSchema, { namespace: state.namespace, id });
  const ns = state.namespace;
  row.queue = row.queue.then(async () => {
    try {
      const res = like ? await clients.counter.like({ item }) : await clients.counter.unlike({ item });
      if (ns === state.namespace) {
        state.counts.set(id, { likes: res.count, viewerLiked: like });
      }
    } catch (err) {
      showProblem(describe(err, like ? "liking" : "unliking"));
      // What the server holds now is unknown: ask again.
      void refreshCounts();
    } finally {
      inFlight.set(row, (inFlight.get(row) ?? 1) - 1);
      if (!pending(row)) {
        const c = state.counts.get(id);
        if (c?.viewerLiked !== undefined) {
          row.liked = c.viewerLiked;
        }
      }
      renderRows();
    }
  });
}

// refreshCounts reads every displayed item's counts once (with the
// viewer's own likes when signed in).
async function refreshCounts(): Promise<void> {
  const ids = displayed();
  if (ids.length === 0) {
    return;
  }
  const ns = state.namespace;
  try {
    const res = await clients.counter.getCounts({ items: ids.map((id) => ({ namespace: ns, id })) });
    if (ns === state.namespace) {
      applyCounts(res.counts, state.session !== undefined);
    }
    if (polling) {
      showPolling();
    } else if (countsState === "live" && countsStatus.dataset["state"] !== "live") {
      // A read that failed earlier (signed out, say) left its message:
      // the stream is still live.
      showStatus(countsStatus, { state: "live" }, "Counts are live.");
    }
  } catch (err) {
    const p = describe(err, "loading the counts");
    countsStatus.dataset["state"] = p.kind;
    setText(countsStatus, p.message);
    if (p.kind === "signed-out") {
      showProblem(p);
    }
  }
}

// ---------------------------------------------------------------- live counts

let countsLive: Live | undefined;
let countsKey = "";
// countsState is the live counts stream's last state.
let countsState = "";
let pollAbort: AbortController | undefined;

// watchCounts (re)starts the live counts of the displayed items when the
// set changed: WatchCounts, or polling GetCounts when the server does not
// offer it.
function watchCounts(): void {
  const ids = displayed();
  const key = state.namespace + "\n" + [...ids].sort().join("\n");
  if (key === countsKey) {
    return;
  }
  countsKey = key;
  countsLive?.stop();
  pollAbort?.abort();
  polling = false;
  countsLive = undefined;
  if (ids.length === 0) {
    setText(countsStatus, "");
    return;
  }
  void refreshCounts();
  const items = ids.map((id) => ({ namespace: state.namespace, id }));
  countsLive = runLive({
    what: "live counts",
    open: (signal) => clients.counter.watchCounts({ items }, { signal }),
    onMessage: (res) => applyCounts(res.counts, false),
    onState: (s) => {
      if (s.state === "unsupported") {
        // No WatchCounts on this server: poll instead, stop asking.
        countsLive?.stop();
        startPolling();
        showPolling();
        return;
      }
      countsState = s.state;
      if (s.state === "live") {
        // Catch up on viewer_liked, which the stream does not carry.
        void refreshCounts();
      }
      showStatus(countsStatus, s, "Counts are live.");
    },
  });
}

let polling = false;

function showPolling(): void {
  countsStatus.dataset["state"] = "polling";
  setText(countsStatus, `Counts refresh every ${countsPollMs} ms (this server has no live counts).`);
}

function startPolling(): void {
  pollAbort?.abort();
  const ctl = new AbortController();
  pollAbort = ctl;
  polling = true;
  void (async () => {
    while (!ctl.signal.aborted) {
      await refreshCounts();
      await sleep(countsPollMs, ctl.signal);
    }
  })();
}

// ---------------------------------------------------------------- ranking

let rankingLive: Live | undefined;

function watchRanking(): void {
  rankingLive?.stop();
  state.ranking = [];
  renderRows();
  const req = { namespace: state.namespace, window: state.window, limit: rankingLimit };
  rankingLive = runLive({
    what: "the live ranking",
    open: (signal) => clients.analytics.watchTopItems(req, { signal }),
    onMessage: (res) => {
      state.ranking = res.items;
      renderRows();
      watchCounts();
    },
    onState: (s) => {
      showStatus(rankingStatus, s, "Ranking is live.");
      rankingEmpty.hidden = state.ranking.length > 0 || s.state !== "live";
    },
  });
  watchCounts();
}

const tabs = byId<HTMLDivElement>("windows");
for (const w of windows) {
  const b = el("button", "tab", w.label);
  b.type = "button";
  b.setAttribute("role", "tab");
  b.dataset["window"] = Window[w.w];
  b.addEventListener("click", () => {
    state.window = w.w;
    renderTabs();
    watchRanking();
  });
  tabs.append(b);
}

function renderTabs(): void {
  for (const b of tabs.querySelectorAll<HTMLButtonElement>("button")) {
    b.setAttribute("aria-selected", String(b.dataset["window"] === Window[state.window]));
  }
}

// ---------------------------------------------------------------- opening items

const openForm = byId<HTMLFormElement>("open-item");
const itemInput = byId<HTMLInputElement>("item-input");
const namespaceForm = byId<HTMLFormElement>("namespace-form");
const namespaceInput = byId<HTMLInputElement>("namespace-input");

openForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const id = itemInput.value.trim();
  if (!itemPattern.test(id)) {
    // The id is shown as the person typed it, as text.
    showNotice(`“${id}” is not a valid item id: use 1 to 128 letters, digits and _ . : -`, "invalid");
    return;
  }
  itemInput.value = "";
  if (!state.opened.includes(id)) {
    state.opened.push(id);
  }
  renderRows();
  watchCounts();
});

namespaceForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const ns = namespaceInput.value.trim();
  if (!namespacePattern.test(ns)) {
    showNotice(`“${ns}” is not a valid namespace: use 1 to 32 lower-case letters, digits, _ and -`, "invalid");
    return;
  }
  if (ns === state.namespace) {
    return;
  }
  state.namespace = ns;
  state.opened = [];
  state.counts.clear();
  watchRanking();
});

// ---------------------------------------------------------------- API statistics

const statsBody = byId<HTMLTableSectionElement>("stats-body");
const statsStatus = byId<HTMLParagraphElement>("stats-status");

async function refreshApiStats(): Promise<number> {
  try {
    const res = await clients.analytics.apiStats({ window: StatsWindow.MINUTE });
    const rows = res.procedures.map((p) => {
      const tr = el("tr");
      const name = p.procedure.replace(/^\/highgopress\./, "").replace(/^([a-z]+)\.v1\./, "");
      const codes = p.codes.map((c) => `${c.code} ${formatCount(c.calls)}`).join(", ");
      const lat = p.latency === undefined ? "–" : `${p.latency.p50Ms.toFixed(1)} / ${p.latency.p99Ms.toFixed(1)} ms`;
      tr.append(el("td", "proc", name), el("td", "num", formatCount(p.calls)), el("td", "codes", codes), el("td", "num", lat));
      return tr;
    });
    statsBody.replaceChildren(...rows);
    statsStatus.dataset["state"] = "live";
    setText(statsStatus, rows.length === 0 ? "No calls in the last minute." : "");
    return apiStatsPollMs;
  } catch (err) {
    const p = describe(err, "API statistics");
    statsStatus.dataset["state"] = p.kind;
    setText(statsStatus, p.message);
    return p.code === Code.Unimplemented ? 15000 : apiStatsPollMs;
  }
}

async function poll(fn: () => Promise<number | void>, defaultMs: number): Promise<void> {
  const never = new AbortController().signal;
  for (;;) {
    if (document.visibilityState === "visible") {
      const next = await fn();
      await sleep(typeof next === "number" ? next : defaultMs, never);
    } else {
      await sleep(defaultMs, never);
    }
  }
}

// ---------------------------------------------------------------- start

renderAccount();
renderTabs();
namespaceInput.value = state.namespace;
watchRanking();
void poll(refreshUserStats, userStatsPollMs);
void poll(refreshApiStats, apiStatsPollMs);
document.body.dataset["ready"] = "true";
