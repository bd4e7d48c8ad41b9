// The Tickwire demo page: lobby, game, voice call and spectator view, built
// on tickwire.js. Links: /?room=auto&name=ana, /?room=<id>&name=ana,
// /?watch=<room>, /?watch=<room>&transport=poll.
//
// window.tickwire.state() returns a plain summary of everything the page
// knows (for tests and debugging); window.tickwire.game, .spectator and
// .call are the live clients.

import { listRooms, createRoom, join, spectate, joinCall } from "./tickwire.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const errors = [];

const page = {
  view: "lobby",
  game: null,
  spectator: null,
  call: null,
  errors,
  state,
};
window.tickwire = page;

function noteError(message) {
  errors.push({ message: String(message), at: Date.now() });
  if (errors.length > 100) errors.shift();
}
window.addEventListener("unhandledrejection", (e) => noteError(e.reason?.message ?? e.reason));

// ---- shared bits ----------------------------------------------------------

function pageURL(query) {
  const u = new URL(location.pathname, location.origin);
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== "") u.searchParams.set(k, v);
  return u;
}

function describe(c) {
  switch (c.state) {
    case "reconnecting":
      return c.retryAt ? `reconnecting in ${Math.max(0, Math.ceil((c.retryAt - Date.now()) / 1000))}s` : "reconnecting";
    case "closed":
      return `closed: ${c.reason ?? "closed"}`;
    default:
      return c.state;
  }
}

let connSource = null;
function showConnection() {
  const el = $("conn");
  const c = connSource?.connection ?? { state: "idle" };
  el.dataset.state = c.state;
  el.textContent = describe(c);
  el.title = c.reason ?? "";
}
setInterval(showConnection, 250);

// The host:port of a node's base URL when it is not this page's server,
// else "" (a room or a game there is shown with it).
function elsewhere(url) {
  if (!url) return "";
  try {
    const u = new URL(url);
    return u.origin === location.origin ? "" : u.host;
  } catch {
    return "";
  }
}

function colorFor(id) {
  return `hsl(${(id * 137.508) % 360} 70% 60%)`;
}

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  Object.assign(e, props);
  e.append(...children);
  return e;
}

// ---- rendering ------------------------------------------------------------

const canvas = $("canvas");
const ctx2d = canvas.getContext("2d");

function draw(world, view, title) {
  const { w, h } = world ?? { w: 1280, h: 720 };
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w;
    canvas.height = h;
  }
  const g = ctx2d;
  g.fillStyle = "#0b101a";
  g.fillRect(0, 0, w, h);
  g.strokeStyle = "#161e2e";
  g.lineWidth = 1;
  for (let x = 0; x <= w; x += 40) {
    g.beginPath();
    g.moveTo(x + 0.5, 0);
    g.lineTo(x + 0.5, h);
    g.stroke();
  }
  for (let y = 0; y <= h; y += 40) {
    g.beginPath();
    g.moveTo(0, y + 0.5);
    g.lineTo(w, y + 0.5);
    g.stroke();
  }
  if (!view) return;
  for (const o of view.orbs) {
    g.fillStyle = "#f6e05e";
    g.shadowColor = "#f6e05e";
    g.shadowBlur = 12;
    g.beginPath();
    g.arc(o.x, o.y, 8, 0, Math.PI * 2);
    g.fill();
  }
  g.shadowBlur = 0;
  const r = world?.r ?? 16;
  g.font = "600 14px system-ui, sans-serif";
  g.textAlign = "center";
  for (const p of view.players.values()) {
    const mine = p.id === view.me;
    g.fillStyle = colorFor(p.id);
    g.beginPath();
    g.arc(p.x, p.y, r, 0, Math.PI * 2);
    g.fill();
    if (mine) {
      g.strokeStyle = "#fff";
      g.lineWidth = 3;
      g.stroke();
    }
    g.fillStyle = "#dfe6f3";
    g.fillText(`${p.name} ${p.score}`, p.x, p.y - r - 8);
  }
  if (title) {
    g.textAlign = "right";
    g.fillStyle = "#8893aa";
    g.fillText(title, w - 12, h - 12);
  }
}

function showScores(snap, me) {
  const rows = [...(snap?.players.values() ?? [])].sort((a, b) => b.score - a.score || a.id - b.id);
  $("scores").replaceChildren(
    ...rows.map((p) =>
      el(
        "tr",
        { className: p.id === me ? "me" : "" },
        el("td", {}, el("span", { className: "swatch", style: `background:${colorFor(p.id)}` }), p.name),
        el("td", {}, String(p.score)),
        el("td", {}, p.rtt ? `${p.rtt} ms` : "–"),
      ),
    ),
  );
}

function showChat(log) {
  const list = $("chat-log");
  list.replaceChildren(
    ...log.slice(-60).map((m) =>
      m.kind === "chat" ? el("li", {}, el("b", {}, m.name), " ", m.text) : el("li", { className: "notice" }, m.text),
    ),
  );
  list.scrollTop = list.scrollHeight;
}

function showShareLinks(room) {
  const play = pageURL({ room });
  const watch = pageURL({ watch: room });
  $("share-link").href = play;
  $("share-link").textContent = play.href;
  $("watch-link").href = watch;
  $("watch-link").textContent = watch.href;
}

// ---- lobby ----------------------------------------------------------------

function startLobby() {
  page.view = "lobby";
  $("lobby").hidden = false;
  $("view-title").textContent = "lobby";
  const nameInput = $("name-input");
  nameInput.value = params.get("name") ?? localStorage.getItem("tickwire.name") ?? "";
  const wanted = params.get("room");
  if (wanted) $("quick-play").textContent = `Join ${wanted}`;
  const go = (room) => {
    const name = nameInput.value.trim();
    if (!name) {
      nameInput.focus();
      $("lobby-error").textContent = "Enter a name first.";
      return;
    }
    localStorage.setItem("tickwire.name", name);
    location.assign(pageURL({ room, name }));
  };
  $("lobby-form").addEventListener("submit", (e) => {
    e.preventDefault();
    go(wanted || "auto");
  });
  $("create-room").addEventListener("click", async () => {
    if (!nameInput.value.trim()) return go("");
    try {
      const room = await createRoom({ private: $("create-private").checked, maxPlayers: Number($("create-seats").value) || undefined });
      go(room.id);
    } catch (err) {
      $("lobby-error").textContent = err.message;
      noteError(err.message);
    }
  });
  page.rooms = [];
  const refresh = async () => {
    try {
      page.rooms = await listRooms();
      showRooms(page.rooms, go);
      $("rooms-updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    } catch (err) {
      $("rooms-updated").textContent = `(${err.message})`;
    }
  };
  refresh();
  setInterval(refresh, 3000);
}

function showRooms(rooms, go) {
  $("rooms-empty").hidden = rooms.length > 0;
  $("rooms").replaceChildren(
    ...rooms.map((r) => {
      // A room of another node is joined through this one: the server
      // answers `moved` and the game follows it there.
      const joinBtn = el("button", { type: "button", className: "join" }, "Join");
      joinBtn.addEventListener("click", () => go(r.id));
      const host = elsewhere(r.url);
      const idCell = el("td", {}, r.id);
      if (host) idCell.append(" ", el("small", { className: "node", title: `hosted at ${r.url}` }, host));
      const watch = el("a", { href: pageURL({ watch: r.id }).href }, "Watch");
      const row = el(
        "tr",
        {},
        idCell,
        el("td", {}, `${r.players}/${r.maxPlayers}`),
        el("td", {}, String(r.spectators)),
        el("td", {}, `${r.hz} Hz`),
        el("td", { className: "actions" }, joinBtn, " ", watch),
      );
      row.dataset.room = r.id;
      if (host) row.dataset.node = host;
      return row;
    }),
  );
}

// ---- game -----------------------------------------------------------------

const KEYS = {
  KeyW: [0, -1], ArrowUp: [0, -1],
  KeyS: [0, 1], ArrowDown: [0, 1],
  KeyA: [-1, 0], ArrowLeft: [-1, 0],
  KeyD: [1, 0], ArrowRight: [1, 0],
};

function startGame(room, name) {
  page.view = "game";
  $("game").hidden = false;
  $("view-title").textContent = `playing as ${name}`;
  const game = join({ name, room });
  page.game = game;
  connSource = game;

  game.addEventListener("welcome", () => {
    $("view-title").textContent = `${name} in ${game.room}`;
    showShareLinks(game.room);
    if (params.get("room") !== game.room) history.replaceState(null, "", pageURL({ room: game.room, name }));
  });
  game.addEventListener("chat", () => showChat(game.chatLog));
  game.addEventListener("servererror", (e) => noteError(`${e.detail.code}: ${e.detail.msg}`));
  game.addEventListener("state", showConnection);

  // Keyboard: keys held now, plus keys tapped since the last tick, so a
  // tap shorter than a tick still moves.
  const held = new Set();
  const tapped = new Set();
  const typingTarget = (e) => e.target instanceof HTMLInputElement || e.target instanceof HTMLTextAreaElement;
  window.addEventListener("keydown", (e) => {
    if (typingTarget(e) || !(e.code in KEYS)) return;
    e.preventDefault();
    held.add(e.code);
    tapped.add(e.code);
  });
  window.addEventListener("keyup", (e) => held.delete(e.code));
  window.addEventListener("blur", () => held.clear());

  let lastSent = [0, 0];
  let inputTimer = 0;
  const sampleInput = () => {
    let dx = 0;
    let dy = 0;
    for (const k of new Set([...held, ...tapped])) {
      dx += KEYS[k][0];
      dy += KEYS[k][1];
    }
    tapped.clear();
    dx = Math.sign(dx);
    dy = Math.sign(dy);
    // Send every tick while moving, and once when stopping.
    if (dx !== 0 || dy !== 0 || lastSent[0] !== 0 || lastSent[1] !== 0) {
      if (game.input(dx, dy)) lastSent = [dx, dy];
    }
  };
  game.addEventListener("welcome", () => {
    clearInterval(inputTimer);
    lastSent = [0, 0];
    inputTimer = setInterval(sampleInput, 1000 / game.world.hz);
  });

  game.addEventListener("snap", () => showScores(game.latest, game.id));

  // Chat and "is typing".
  const input = $("chat-input");
  input.addEventListener("input", () => input.value && game.typing());
  $("chat-form").addEventListener("submit", (e) => {
    e.preventDefault();
    if (game.chat(input.value)) input.value = "";
  });
  const showTyping = () => {
    const who = game.typers();
    $("typing").textContent = who.length ? `${who.join(", ")} ${who.length > 1 ? "are" : "is"} typing…` : "";
  };
  game.addEventListener("typing", showTyping);
  setInterval(showTyping, 500);

  setupVoice(game, name);

  const frame = () => {
    const hud = [
      `tick ${game.latest?.n ?? "–"}`,
      `ping ${game.ping === null ? "–" : game.ping.toFixed(1) + " ms"}  jitter ${game.jitter === null ? "–" : game.jitter.toFixed(1) + " ms"}`,
      `clock offset ${game.clockOffset === null ? "–" : Math.round(game.clockOffset) + " ms"}`,
      `unacked inputs ${game.pending.length}`,
    ];
    const node = elsewhere(game.node);
    if (node) hud.push(`node ${node}`);
    $("hud").textContent = hud.join("\n");
    draw(game.world, game.latest ? game.view() : null);
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
}

function setupVoice(game, name) {
  const btn = $("call-btn");
  const mute = $("mute-btn");
  const showPeers = () => {
    const call = page.call;
    $("call-state").textContent = call ? describe(call.connection) : "";
    $("call-peers").replaceChildren(
      ...(call?.peers() ?? []).map((p) =>
        el(
          "li",
          {},
          el("span", {}, p.name || p.id),
          el("span", { className: `state ${p.state}` }, `${p.state} · channel ${p.channel}`),
        ),
      ),
    );
  };
  const showMessages = () => {
    $("dc-log").replaceChildren(
      ...(page.call?.messages ?? []).slice(-20).map((m) => el("li", {}, el("b", {}, m.dir === "out" ? "you" : m.name || m.from), " ", m.text)),
    );
  };
  btn.addEventListener("click", () => {
    if (page.call && page.call.connection.state !== "closed") {
      page.call.leave();
      page.call = null;
      btn.textContent = "Join voice";
      mute.hidden = true;
      $("dc-form").hidden = true;
      showPeers();
      return;
    }
    if (!game.room || game.room === "auto") return;
    // The room's call is on the node hosting the room.
    const call = joinCall({ call: game.room, name, server: game.node });
    page.call = call;
    call.addEventListener("peers", showPeers);
    call.addEventListener("state", showPeers);
    call.addEventListener("message", showMessages);
    call.addEventListener("error", (e) => noteError(e.detail.message));
    btn.textContent = "Leave voice";
    mute.hidden = false;
    mute.textContent = "Mute";
    $("dc-form").hidden = false;
    showPeers();
  });
  mute.addEventListener("click", () => {
    if (!page.call) return;
    page.call.setMuted(!page.call.muted);
    mute.textContent = page.call.muted ? "Unmute" : "Mute";
  });
  $("dc-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const input = $("dc-input");
    if (page.call && input.value.trim() && page.call.send(input.value.trim()) > 0) {
      input.value = "";
      showMessages();
    }
  });
  setInterval(showPeers, 1000);
}

// ---- spectator ------------------------------------------------------------

function startWatch(room, transport) {
  page.view = "watch";
  $("game").hidden = false;
  $("voice").hidden = true;
  $("chat-form").hidden = true;
  $("typing").hidden = true;
  $("view-title").textContent = `watching ${room}`;
  showShareLinks(room);
  const s = spectate({ room, transport: transport === "poll" || transport === "sse" ? transport : "auto" });
  page.spectator = s;
  connSource = s;
  s.addEventListener("state", showConnection);
  s.addEventListener("chat", () => showChat(s.chatLog));
  s.addEventListener("snap", () => showScores(s.latest, null));
  const frame = () => {
    $("hud").textContent = [
      `spectating · ${s.transport === "sse" ? "Server-Sent Events" : "long-poll"}`,
      `tick ${s.latest?.n ?? "–"}  event ${s.lastEventId ?? "–"}`,
    ].join("\n");
    draw(s.world, s.latest ? s.view() : null, "read-only");
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
}

// ---- state for tests and debugging -----------------------------------------

function plainPlayers(snap) {
  const out = {};
  for (const p of snap?.players.values() ?? []) out[p.id] = { name: p.name, x: p.x, y: p.y, score: p.score, rtt: p.rtt };
  return out;
}

function state() {
  const g = page.game;
  const s = page.spectator;
  const c = page.call;
  return {
    view: page.view,
    errors: errors.map((e) => e.message),
    rooms: page.rooms ?? null,
    game: g && {
      connection: g.connection,
      id: g.id,
      room: g.room,
      node: g.node,
      moves: g.moves,
      world: g.world,
      tick: g.latest?.n ?? null,
      ack: g.latest?.ack ?? null,
      players: plainPlayers(g.latest),
      predicted: g.predicted,
      pending: g.pending.length,
      ping: g.ping,
      jitter: g.jitter,
      clockOffset: g.clockOffset,
      chat: g.chatLog.map((m) => ({ kind: m.kind, id: m.id, name: m.name, text: m.text })),
      typing: g.typers(),
    },
    spectator: s && {
      connection: s.connection,
      transport: s.transport,
      lastEventId: s.lastEventId,
      room: s.info,
      tick: s.latest?.n ?? null,
      players: plainPlayers(s.latest),
      chat: s.chatLog.map((m) => ({ kind: m.kind, id: m.id, name: m.name, text: m.text })),
      counts: s.counts,
      reconnects: s.reconnects,
    },
    call: c && {
      connection: c.connection,
      id: c.id,
      muted: c.muted,
      microphone: Boolean(c.stream),
      peers: c.peers(),
      messages: c.messages.map((m) => ({ dir: m.dir, from: m.from, text: m.text })),
    },
  };
}

// ---- start ------------------------------------------------------------------

const watch = params.get("watch");
const room = params.get("room");
const name = params.get("name")?.trim();
if (watch) startWatch(watch, params.get("transport"));
else if (room && name) startGame(room, name.slice(0, 24));
else startLobby();
showConnection();
