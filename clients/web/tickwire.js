/**
 * tickwire.js: the network layer of the Tickwire browser client, as one
 * ES module with no build step. A game page uses it the way it would use
 * any client library:
 *
 *   import { join, spectate, joinCall, listRooms } from "./tickwire.js";
 *
 *   const game = join({ name: "ana", room: "auto" });
 *   game.addEventListener("snap", () => draw(game.view()));
 *   game.addEventListener("chat", (e) => show(e.detail));
 *   setInterval(() => game.input(dx, dy), 1000 / game.world.hz);
 *
 * It speaks the Tickwire wire protocol version 1 (docs/protocol.md): the
 * player WebSocket /ws/play (msgpack), the spectator feeds (Server-Sent
 * Events with a long-poll fallback) and the signaling WebSocket /ws/signal
 * for WebRTC voice calls. Every class is an EventTarget; events are
 * CustomEvents whose `detail` carries the message.
 *
 * msgpack comes from @msgpack/msgpack (vendor/msgpack.min.js), loaded by
 * this module when the page has not loaded it already.
 *
 * @module tickwire
 */

const MessagePack =
  globalThis.MessagePack ?? (await loadScript(new URL("./vendor/msgpack.min.js", import.meta.url)));

function loadScript(url) {
  return new Promise((resolve, reject) => {
    const s = document.createElement("script");
    s.src = url.href;
    s.onload = () => resolve(globalThis.MessagePack);
    s.onerror = () => reject(new Error(`tickwire: cannot load ${url}`));
    document.head.append(s);
  });
}

const encoder = new MessagePack.Encoder({ ignoreUndefined: true });
const decoder = new MessagePack.Decoder();

/** Version of the wire protocol this module speaks. */
export const PROTOCOL_VERSION = 1;

/**
 * Close codes after which a player connection is not retried: the server
 * refused the session for good (bad message, auth, unknown room, full room,
 * frame too big) or the session ended on purpose (1000).
 */
const FATAL_CLOSE = new Set([1000, 1009, 4000, 4001, 4004, 4009]);

/** Why the server closed, by close code, for the connection state. */
const CLOSE_REASONS = {
  1000: "closed",
  1001: "server going away",
  1006: "connection lost",
  1008: "slow consumer",
  1009: "message too big",
  4000: "bad message",
  4001: "unauthorized",
  4004: "room not found",
  4009: "room full",
  4029: "rate limited",
  4307: "room is on another node",
};

/**
 * `moved` answers followed for one join: the protocol asks a client to
 * follow one and to treat a second one as a failure.
 */
const MAX_MOVES = 1;

/**
 * The delay before reconnection attempt number `attempt` (0 for the first):
 * exponential from `min`, doubling each attempt up to `max`, randomized by
 * ±30% (jitter, so that many clients do not retry in step) and kept within
 * [min, max].
 *
 * @param {number} attempt attempts already made since the last success
 * @param {{min?: number, max?: number}} [limits] bounds in ms (1000, 30000)
 * @returns {number} delay in milliseconds
 */
export function backoffDelay(attempt, { min = 1000, max = 30000 } = {}) {
  const base = Math.min(max, min * 2 ** Math.min(attempt, 30));
  const jittered = base * (0.7 + 0.6 * Math.random());
  return Math.round(Math.min(max, Math.max(min, jittered)));
}

function httpBase(server) {
  return new URL(server ?? globalThis.location.origin);
}

function wsURL(server, path) {
  const u = new URL(path, httpBase(server));
  u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
  return u;
}

/**
 * The base URL of a node as a `moved` error names it ("http://10.0.0.2:8080"),
 * without a trailing slash, or null when it is not an http(s) URL.
 */
function nodeBase(url) {
  if (typeof url !== "string" || url === "") return null;
  let u;
  try {
    u = new URL(url);
  } catch {
    return null;
  }
  if ((u.protocol !== "http:" && u.protocol !== "https:") || u.username || u.password) return null;
  u.search = "";
  u.hash = "";
  return u.href.replace(/\/+$/, "");
}

/** The player WebSocket of the node at base URL `base`: http becomes ws, https wss, path + /ws/play. */
function playURL(base) {
  const u = new URL(base);
  u.pathname = u.pathname.replace(/\/+$/, "") + "/ws/play";
  u.protocol = u.protocol === "https:" || u.protocol === "wss:" ? "wss:" : "ws:";
  return u;
}

async function readError(res) {
  try {
    const body = await res.json();
    if (body?.error?.message) return `${body.error.code}: ${body.error.message}`;
  } catch {
    // not the JSON error body
  }
  return `HTTP ${res.status}`;
}

function authHeaders(token) {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/**
 * A public room as listed by the server.
 * @typedef {object} RoomInfo
 * @property {string} id
 * @property {string} mode
 * @property {number} players
 * @property {number} maxPlayers
 * @property {number} spectators
 * @property {number} hz
 * @property {boolean} [private]
 * @property {string} [url] base URL of the node hosting the room (with
 *   several nodes it may differ from the server asked; joining the room
 *   there or through any node works, see GameClient)
 */

/**
 * Lists the public rooms (GET /api/rooms), fullest first.
 *
 * @param {{server?: string, token?: string, signal?: AbortSignal}} [options]
 *   `server` is the server's origin (default: this page's)
 * @returns {Promise<RoomInfo[]>}
 */
export async function listRooms({ server, token, signal } = {}) {
  const res = await fetch(new URL("/api/rooms", httpBase(server)), {
    headers: authHeaders(token),
    cache: "no-store",
    signal,
  });
  if (!res.ok) throw new Error(`list rooms: ${await readError(res)}`);
  return (await res.json()).rooms ?? [];
}

/**
 * Creates a room (POST /api/rooms).
 *
 * @param {{mode?: string, maxPlayers?: number, private?: boolean}} [room]
 * @param {{server?: string, token?: string}} [options]
 * @returns {Promise<RoomInfo>} the new room; join it by its `id`
 */
export async function createRoom(room = {}, { server, token } = {}) {
  const res = await fetch(new URL("/api/rooms", httpBase(server)), {
    method: "POST",
    headers: { "Content-Type": "application/json", ...authHeaders(token) },
    body: JSON.stringify(room),
  });
  if (res.status !== 201) throw new Error(`create room: ${await readError(res)}`);
  return res.json();
}

/**
 * Fetches the ICE servers for WebRTC (GET /api/ice).
 *
 * @param {{server?: string, token?: string}} [options]
 * @returns {Promise<{iceServers: RTCIceServer[], ttl: number}>}
 */
export async function fetchICEServers({ server, token } = {}) {
  const res = await fetch(new URL("/api/ice", httpBase(server)), { headers: authHeaders(token) });
  if (!res.ok) throw new Error(`ice servers: ${await readError(res)}`);
  return res.json();
}

/**
 * One player's state in a snapshot.
 * @typedef {object} PlayerState
 * @property {number} id entity id
 * @property {string} name
 * @property {number} x
 * @property {number} y
 * @property {number} vx velocity, units/s
 * @property {number} vy
 * @property {number} score
 * @property {number} rtt round trip measured by the server, ms (0 = unknown)
 */

/**
 * A snapshot as decoded by this module.
 * @typedef {object} Snapshot
 * @property {number} n tick number
 * @property {number} st server time, Unix ms
 * @property {number} [ack] highest input seq applied (player feed only)
 * @property {Map<number, PlayerState>} players by id
 * @property {{id: number, x: number, y: number}[]} orbs
 */

function decodeSnap(s, names) {
  const players = new Map();
  for (const [id, x, y, vx, vy, score, rtt] of s.p ?? []) {
    players.set(id, { id, name: names.get(id) ?? `#${id}`, x, y, vx, vy, score, rtt });
  }
  const orbs = (s.o ?? []).map(([id, x, y]) => ({ id, x, y }));
  return { n: s.n, st: s.st, ack: s.ack, players, orbs };
}

// ---- delta snapshots ---------------------------------------------------------
//
// Delta mode is an addition to the protocol (docs/protocol.md, "Delta
// snapshots"): the client sends `caps: ["delta"]` in `join`, receives
// `delta` frames whose `d` bytes describe a snapshot relative to one it
// acknowledged (or to nothing: a keyframe), and acknowledges every snapshot
// it rebuilds with `{t: "ack", n}`. The format is the one of wire/delta.go.

/** Quanta per unit: positions in 1/64 unit, velocities in 1/64 unit/s. */
export const DELTA_SCALE = 64;
/** Rebuilt snapshots kept as baselines (the server picks among its last 64). */
const DELTA_KEEP = 128;

/** Reads the varints of a delta's bytes. */
class VarintReader {
  /** @param {Uint8Array} bytes */
  constructor(bytes) {
    this.b = bytes;
    this.i = 0;
  }

  /** An unsigned varint (LEB128), exact up to 2^53. */
  u() {
    let v = 0;
    let mul = 1;
    for (;;) {
      if (this.i >= this.b.length) throw new Error("delta: truncated");
      const c = this.b[this.i++];
      v += (c & 0x7f) * mul;
      if (c < 0x80) return v;
      mul *= 128;
      if (mul > 2 ** 63) throw new Error("delta: varint too long");
    }
  }

  /** A zigzag varint. */
  z() {
    const u = this.u();
    return u % 2 === 0 ? u / 2 : -(u + 1) / 2;
  }

  /** A count of items taking at least a byte each. */
  count(limit) {
    const n = this.u();
    if (n > limit || n > this.b.length - this.i) throw new Error(`delta: count ${n} out of range`);
    return n;
  }
}

/**
 * Where a coordinate is expected after `age` ticks, from its value and
 * velocity in the baseline and its velocity now (all in quanta); the same
 * integer formula as the server's.
 */
export function deltaPredict(q, vb, vc, age, hz) {
  return q + Math.floor((2 * age * vb + (age + 1) * (vc - vb) + hz) / (2 * hz));
}

const EMPTY_STATE = { n: 0, st: 0, p: [], o: [] };

/**
 * Rebuilds the quantized state a delta's bytes describe.
 * @param {Uint8Array} d the `d` bytes of a `delta` frame
 * @param {number} hz the room's tick rate
 * @param {(n: number) => object|undefined} baseline a state this client rebuilt before, by tick
 * @returns {{n: number, st: number, keyframe: boolean, p: object[], o: object[]}}
 */
export function decodeDelta(d, hz, baseline) {
  const r = new VarintReader(d);
  const n = r.u();
  const age = r.u();
  let base = EMPTY_STATE;
  if (age !== 0) {
    if (age >= n) throw new Error("delta: bad baseline age");
    base = baseline(n - age);
    if (!base) throw Object.assign(new Error(`delta: baseline ${n - age} not held`), { baseline: true });
  }
  const st = base.st + r.z();
  const gone = new Set();
  let id = 0;
  for (let i = 0, k = r.count(4096); i < k; i++) {
    id += r.u();
    gone.add(id);
  }
  const entered = [];
  id = 0;
  for (let i = 0, k = r.count(4096); i < k; i++) {
    id += r.u();
    entered.push({ id, x: r.z(), y: r.z(), vx: r.z(), vy: r.z(), score: r.z(), rtt: r.z() });
  }
  const p = [];
  let j = 0;
  for (const b of base.p) {
    if (gone.has(b.id)) {
      gone.delete(b.id);
      continue;
    }
    const mask = r.u();
    if (mask > 63) throw new Error("delta: bad player mask");
    const c = { ...b };
    if (mask & 1) c.vx += r.z();
    if (mask & 2) c.vy += r.z();
    c.x = deltaPredict(b.x, b.vx, c.vx, age, hz);
    c.y = deltaPredict(b.y, b.vy, c.vy, age, hz);
    if (mask & 4) c.x += r.z();
    if (mask & 8) c.y += r.z();
    if (mask & 16) c.score += r.z();
    if (mask & 32) c.rtt += r.z();
    while (j < entered.length && entered[j].id < c.id) p.push(entered[j++]);
    p.push(c);
  }
  while (j < entered.length) p.push(entered[j++]);
  if (gone.size) throw new Error("delta: removed player not in the baseline");
  const count = r.u();
  const o = [];
  let slot = -1;
  for (let i = 0, k = r.count(count); i < k; i++) {
    const next = slot + 1 + r.u();
    if (next >= count) throw new Error("delta: orb slot out of range");
    for (let s = slot + 1; s < next; s++) o.push(base.o[s]);
    slot = next;
    o.push({ id: (base.o[slot]?.id ?? 0) + r.z(), x: r.z(), y: r.z() });
  }
  for (let s = slot + 1; s < count; s++) o.push(base.o[s]);
  if (o.some((x) => x === undefined)) throw new Error("delta: orb slot missing");
  if (r.i !== d.length) throw new Error("delta: trailing bytes");
  return { n, st, keyframe: age === 0, p, o };
}

/**
 * Turns the `delta` frames of one connection back into snapshots, keeping
 * the newest rebuilt states as baselines.
 */
export class DeltaReceiver {
  /** @param {number} hz the room's tick rate (welcome `hz`) */
  constructor(hz) {
    this.hz = hz;
    this.ring = [];
    this.keyframes = 0;
  }

  /**
   * @param {Uint8Array} d the `d` bytes of a `delta` frame
   * @returns {object} the quantized state; its `n` is what to acknowledge
   */
  apply(d) {
    const s = decodeDelta(d, this.hz, (n) => this.ring.find((x) => x.n === n));
    if (s.keyframe) this.keyframes++;
    this.ring.push(s);
    if (this.ring.length > DELTA_KEEP) this.ring.shift();
    return s;
  }
}

/** A rebuilt state as a Snapshot, coordinates back in units. */
function deltaSnapshot(s, ack, names) {
  const players = new Map();
  for (const p of s.p) {
    players.set(p.id, {
      id: p.id,
      name: names.get(p.id) ?? `#${p.id}`,
      x: p.x / DELTA_SCALE,
      y: p.y / DELTA_SCALE,
      vx: p.vx / DELTA_SCALE,
      vy: p.vy / DELTA_SCALE,
      score: p.score,
      rtt: p.rtt,
    });
  }
  const orbs = s.o.map((o) => ({ id: o.id, x: o.x / DELTA_SCALE, y: o.y / DELTA_SCALE }));
  return { n: s.n, st: s.st, ack, players, orbs };
}

/**
 * Keeps recent snapshots and answers where every player was at a given
 * server time, interpolating between the two snapshots around it. Renderers
 * sample it a little in the past (about two snapshot intervals) so that
 * there is always a snapshot on each side.
 */
export class SnapshotBuffer {
  /** @param {number} [size] snapshots kept */
  constructor(size = 32) {
    this.size = size;
    /** @type {Snapshot[]} oldest first */
    this.snaps = [];
    /** Mean interval between snapshots, server ms. */
    this.interval = 100;
  }

  /** @param {Snapshot} snap a newer snapshot */
  push(snap) {
    const last = this.snaps.at(-1);
    if (last && snap.st <= last.st) {
      if (snap.n > last.n) this.snaps[this.snaps.length - 1] = snap;
      return;
    }
    if (last) this.interval += (Math.min(snap.st - last.st, 1000) - this.interval) / 8;
    this.snaps.push(snap);
    if (this.snaps.length > this.size) this.snaps.shift();
  }

  /** Forgets every snapshot (after a resync). */
  clear() {
    this.snaps = [];
  }

  /**
   * Positions of the players at server time `t`.
   * @param {number} t server time, Unix ms
   * @returns {Map<number, PlayerState>} interpolated states by id
   */
  sample(t) {
    const snaps = this.snaps;
    if (snaps.length === 0) return new Map();
    let i = snaps.length - 1;
    while (i > 0 && snaps[i - 1].st > t) i--;
    const b = snaps[i];
    const a = i > 0 ? snaps[i - 1] : b;
    if (a === b || t >= b.st) return b.players;
    const f = Math.max(0, Math.min(1, (t - a.st) / (b.st - a.st)));
    const out = new Map();
    for (const [id, pb] of b.players) {
      const pa = a.players.get(id);
      out.set(id, pa ? { ...pb, x: pa.x + (pb.x - pa.x) * f, y: pa.y + (pb.y - pa.y) * f } : pb);
    }
    return out;
  }
}

/**
 * Estimates the offset between the server's clock and this one.
 * `now() + offset` is the server's time.
 */
class Clock {
  constructor() {
    this.offset = null;
    this.samples = [];
  }

  /** A sample from a ping: the pong's `st` at round trip `rtt`. */
  fromPong(st, rtt) {
    this.samples.push({ offset: st + rtt / 2 - Date.now(), rtt });
    if (this.samples.length > 8) this.samples.shift();
    // The sample with the shortest round trip has the least error.
    this.offset = this.samples.reduce((a, b) => (b.rtt < a.rtt ? b : a)).offset;
  }

  /** A rough sample from a message stamped `st` by the server. */
  fromStamp(st) {
    const sample = st - Date.now();
    if (this.offset === null || this.samples.length === 0) {
      // Messages arrive late, never early: the largest sample is the best
      // one, and the estimate drifts down slowly to follow clock changes.
      this.offset = this.offset === null ? sample : Math.max(sample, this.offset - 1);
    }
  }

  serverNow() {
    return Date.now() + (this.offset ?? 0);
  }
}

function clampUnit(dx, dy) {
  dx = Number.isFinite(dx) ? Math.max(-1, Math.min(1, dx)) : 0;
  dy = Number.isFinite(dy) ? Math.max(-1, Math.min(1, dy)) : 0;
  const len = Math.hypot(dx, dy);
  return len > 1 ? [dx / len, dy / len] : [dx, dy];
}

/**
 * One step of the game's movement rule, the same as the server's: the
 * input vector is clamped to length 1 and the position to the arena.
 *
 * @param {{x: number, y: number}} pos
 * @param {number} dx
 * @param {number} dy
 * @param {{w: number, h: number, r: number, speed: number, hz: number}} world
 * @returns {{x: number, y: number}}
 */
export function stepPosition(pos, dx, dy, world) {
  [dx, dy] = clampUnit(dx, dy);
  const dt = 1 / world.hz;
  const clamp = (v, lo, hi) => Math.max(lo, Math.min(hi, v));
  return {
    x: clamp(pos.x + dx * world.speed * dt, world.r, world.w - world.r),
    y: clamp(pos.y + dy * world.speed * dt, world.r, world.h - world.r),
  };
}

/**
 * A chat or notice line.
 * @typedef {object} ChatEntry
 * @property {"chat"|"joined"|"left"|"info"} kind
 * @property {number} [id] player id
 * @property {string} [name]
 * @property {string} text
 * @property {number} st server time (Unix ms) or local time for notices
 */

/**
 * Connection state of a client.
 * @typedef {object} ConnectionState
 * @property {"idle"|"connecting"|"connected"|"reconnecting"|"closed"} state
 * @property {string} [reason] why it is reconnecting or closed
 * @property {number} [retryAt] Date.now() time of the next attempt, when reconnecting
 * @property {number} attempt reconnection attempts since the last success
 * @property {number} [code] the WebSocket close code, when closed by the server
 */

/**
 * A player's connection to a room over /ws/play.
 *
 * Events (CustomEvent, message in `detail`): `state` (ConnectionState),
 * `welcome`, `snap` (Snapshot), `pong` ({rtt, jitter, offset}), `joined`,
 * `left`, `chat` (ChatEntry), `typing` ({id, name}), `servererror`
 * ({code, msg}), `moved` ({from, to, room}).
 *
 * Several nodes: when the server answers the `join` with `error` `moved`
 * (the room is hosted by another node of the cluster), the client joins
 * again at once at the node it names (`url` + /ws/play, http becoming ws
 * and https wss), for the room it names, with the same name, token, resume
 * token and options, and emits `moved`; the caller sees one join. It
 * follows one `moved` per join; a second is a failure (state "closed",
 * code 4307), as is a `moved` without a usable URL. From then on `node`
 * is that node and every reconnection (a resume after a drop) goes there.
 * `follow: false` turns this off: the `moved` ends the connection and is
 * reported as a `servererror`.
 *
 * Own movement is predicted: every `input` is applied locally at once and
 * kept until the server acknowledges its `seq`; each snapshot resets the
 * prediction to the server's position and replays the inputs not yet
 * applied. Other players should be drawn from `view()`, which interpolates
 * them about two ticks in the past.
 *
 * By default the client asks for delta snapshots (`delta: true`): the
 * server then sends each snapshot as a difference from one the client
 * acknowledged, a fraction of the bytes; the client rebuilds it and emits the
 * same `snap` event, with coordinates within 1/128 unit of the server's.
 * Each rebuilt snapshot is acknowledged with the next `input` when one goes
 * out within a tick (as its `n`), else with an `ack` of its own.
 * `stats` counts what arrived, and the acknowledgements sent (`acks` on
 * their own, `inputAcks` inside inputs).
 */
export class GameClient extends EventTarget {
  /** `moved` answers followed in the join under way. */
  #hops = 0;

  /**
   * @param {object} options
   * @param {string} options.name display name, 1-24 characters
   * @param {string} [options.room] "auto" (default) or a room id
   * @param {string} [options.server] server origin (default: this page's)
   * @param {string} [options.token] JWT when the server requires one
   * @param {boolean} [options.reconnect] reconnect after a drop (true)
   * @param {number} [options.pingInterval] ms between pings (1000)
   * @param {number} [options.minBackoff] first reconnection delay, ms (1000)
   * @param {number} [options.maxBackoff] longest reconnection delay, ms (30000)
   * @param {boolean} [options.delta] ask for delta snapshots (true)
   * @param {boolean} [options.follow] follow a `moved` answer to the node
   *   hosting the room (true)
   */
  constructor({ name, room = "auto", server, token, reconnect = true, pingInterval = 1000, minBackoff = 1000, maxBackoff = 30000, delta = true, follow = true }) {
    super();
    this.name = name;
    /** Room id; "auto" until the welcome names the room. */
    this.room = room;
    /** The server asked first (the `server` option; undefined: this page's origin). */
    this.server = server;
    /**
     * Base URL of the node this connection is on, or is connecting to: the
     * server's origin, or after a `moved` the node hosting the room
     * (e.g. "http://10.0.0.2:8080"). Reconnections go here.
     */
    this.node = httpBase(server).origin;
    /** `moved` answers followed since the client was made. */
    this.moves = 0;
    this.token = token;
    this.options = { reconnect, pingInterval, minBackoff, maxBackoff, delta, follow };
    /** Rebuilds delta snapshots; one per connection, made at its welcome. */
    this.deltaReceiver = null;
    /**
     * What arrived: frames and their payload bytes, snapshots (full or
     * rebuilt), delta frames and keyframes among them.
     */
    this.stats = { frames: 0, bytes: 0, snaps: 0, deltas: 0, keyframes: 0, acks: 0, inputAcks: 0 };
    /** Delta mode: the tick to acknowledge, sent with the next input or within a tick. */
    this.ackDue = 0;
    /** This player's entity id, null before the first welcome. */
    this.id = null;
    /** The arena: {w, h, r, speed, hz}, null before the first welcome. */
    this.world = null;
    /** @type {ConnectionState} */
    this.connection = { state: "idle", attempt: 0 };
    /** Player names by id. @type {Map<number, string>} */
    this.names = new Map();
    /** The newest snapshot. @type {Snapshot|null} */
    this.latest = null;
    /** Recent snapshots for interpolation. */
    this.buffer = new SnapshotBuffer();
    /** Own predicted position, null before the first snapshot. */
    this.predicted = null;
    /** Chat lines and join/leave notices, oldest first. @type {ChatEntry[]} */
    this.chatLog = [];
    /** Round trip of the last ping, ms. */
    this.ping = null;
    /** Smoothed variation of the round trip, ms. */
    this.jitter = null;
    /** Ids of players typing, with the Date.now() time their notice ends. */
    this.typingUntil = new Map();
    this.clock = new Clock();
    /** Inputs sent and not yet acknowledged. */
    this.pending = [];
    this.seq = 0;
    this.resumeToken = null;
    this.ws = null;
    this.timers = { ping: 0, retry: 0, ack: 0 };
    this.lastTypingSent = 0;
    /** Why the page ended the session ("left", "closed"), false while it has not. */
    this.closing = false;
  }

  /** Opens the connection to `node`; `join()` calls it for you. */
  connect() {
    if (this.ws || this.closing) return;
    this.#setConnection({ state: this.connection.attempt > 0 ? "reconnecting" : "connecting", reason: this.connection.reason });
    const ws = new WebSocket(playURL(this.node));
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    let serverError = null;
    let welcomed = false;
    ws.onopen = () => {
      this.deltaReceiver = null;
      this.#send({
        t: "join",
        name: this.name,
        room: this.room,
        token: this.token,
        resume: this.resumeToken ?? undefined,
        caps: this.options.delta ? ["delta"] : undefined,
      });
    };
    ws.onmessage = (e) => {
      if (typeof e.data === "string") return;
      this.stats.frames++;
      this.stats.bytes += e.data.byteLength;
      let m;
      try {
        m = decoder.decode(new Uint8Array(e.data));
      } catch {
        return; // not msgpack: ignore, as with unknown types
      }
      if (m?.t === "welcome") welcomed = true;
      if (m?.t === "error") {
        serverError = m;
        // Handled when the server closes: followed, or reported then.
        if (m.code === "moved" && !welcomed) return;
      }
      this.#handle(m);
    };
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      clearInterval(this.timers.ping);
      clearTimeout(this.timers.ack);
      this.timers.ack = 0;
      this.ackDue = 0;
      const reason = serverError?.msg || e.reason || CLOSE_REASONS[e.code] || `code ${e.code}`;
      if (this.closing) {
        this.#setConnection({ state: "closed", reason: this.closing, attempt: 0 });
      } else if (!welcomed && serverError?.code === "moved") {
        this.#onMoved(serverError);
      } else if (FATAL_CLOSE.has(e.code) || e.code === 4307 || !this.options.reconnect) {
        this.#setConnection({ state: "closed", reason, code: e.code, attempt: 0 });
      } else {
        this.#scheduleReconnect(reason);
      }
    };
  }

  /** Follows a `moved` answer to the join, or ends the connection. */
  #onMoved(m) {
    const to = nodeBase(m.url);
    const room = typeof m.room === "string" && m.room !== "" ? m.room : this.room;
    let failure = null;
    if (!this.options.follow) failure = m.msg || CLOSE_REASONS[4307];
    else if (!to) failure = `moved to an unusable url ${JSON.stringify(m.url ?? "")}`;
    else if (this.#hops >= MAX_MOVES) failure = `moved again (to ${to}), not followed`;
    if (failure) {
      this.#emit("servererror", { code: m.code, msg: m.msg, url: m.url, room: m.room });
      this.#setConnection({ state: "closed", reason: failure, code: 4307, attempt: 0 });
      return;
    }
    const from = this.node;
    this.#hops++;
    this.moves++;
    this.node = to;
    this.room = room;
    this.#emit("moved", { from, to, room });
    this.connect();
  }

  #scheduleReconnect(reason) {
    this.#hops = 0; // the next attempt is a new join
    const attempt = this.connection.attempt;
    const delay = backoffDelay(attempt, { min: this.options.minBackoff, max: this.options.maxBackoff });
    this.#setConnection({ state: "reconnecting", reason, retryAt: Date.now() + delay, attempt: attempt + 1 });
    this.timers.retry = setTimeout(() => this.connect(), delay);
  }

  #setConnection(c) {
    this.connection = { attempt: this.connection.attempt, ...c };
    this.#emit("state", this.connection);
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  #send(m) {
    if (this.ws?.readyState !== WebSocket.OPEN) return false;
    this.ws.send(encoder.encode(m));
    return true;
  }

  #handle(m) {
    switch (m?.t) {
      case "welcome":
        return this.#onWelcome(m);
      case "snap":
        return this.#onSnapshot(decodeSnap(m, this.names));
      case "delta":
        return this.#onDelta(m);
      case "pong": {
        const rtt = performance.now() - m.ts;
        if (this.ping !== null) this.jitter += (Math.abs(rtt - this.ping) - this.jitter) / 16;
        else this.jitter = 0;
        this.ping = rtt;
        this.clock.fromPong(m.st, rtt);
        return this.#emit("pong", { rtt, jitter: this.jitter, offset: this.clock.offset });
      }
      case "joined":
        this.names.set(m.id, m.name);
        this.#log({ kind: "joined", id: m.id, name: m.name, text: `${m.name} joined`, st: Date.now() });
        return this.#emit("joined", m);
      case "left": {
        const name = this.names.get(m.id) ?? `#${m.id}`;
        this.names.delete(m.id);
        this.typingUntil.delete(m.id);
        this.#log({ kind: "left", id: m.id, name, text: `${name} left (${m.reason})`, st: Date.now() });
        return this.#emit("left", { ...m, name });
      }
      case "chat":
        this.typingUntil.delete(m.id);
        this.#log({ kind: "chat", id: m.id, name: m.name, text: m.text, st: m.st });
        return;
      case "typing":
        this.typingUntil.set(m.id, Date.now() + 3000);
        return this.#emit("typing", { id: m.id, name: this.names.get(m.id) ?? `#${m.id}` });
      case "error":
        return this.#emit("servererror", { code: m.code, msg: m.msg });
      default:
      // unknown types are ignored
    }
  }

  #onWelcome(m) {
    const resumed = this.id !== null && this.id === m.id;
    this.id = m.id;
    this.room = m.room;
    this.world = { w: m.w, h: m.h, r: m.r, speed: m.speed, hz: m.hz };
    this.resumeToken = m.resume;
    this.#hops = 0;
    this.names = new Map((m.players ?? []).map((p) => [p.id, p.name]));
    this.pending = [];
    this.buffer.clear();
    if (!resumed) this.predicted = null;
    this.clock.fromStamp(m.st);
    if (this.options.delta) this.deltaReceiver = new DeltaReceiver(m.hz);
    this.#setConnection({ state: "connected", attempt: 0, resumed });
    clearInterval(this.timers.ping);
    this.timers.ping = setInterval(() => this.#sendPing(), this.options.pingInterval);
    this.#sendPing();
    this.#emit("welcome", m);
  }

  #onDelta(m) {
    if (!this.deltaReceiver || !(m.d instanceof Uint8Array)) return;
    let s;
    try {
      s = this.deltaReceiver.apply(m.d);
    } catch {
      // A frame this client cannot rebuild: ask for a keyframe.
      this.#send({ t: "ack", n: 0 });
      this.stats.acks++;
      return;
    }
    this.#ackLater(s.n);
    this.stats.deltas++;
    if (s.keyframe) this.stats.keyframes++;
    this.#onSnapshot(deltaSnapshot(s, m.ack, this.names));
  }

  /**
   * Acknowledges a rebuilt delta snapshot: with the next input when one goes
   * out within a tick (an input may carry `n`), else on its own.
   */
  #ackLater(n) {
    this.ackDue = n;
    if (this.timers.ack) return;
    this.timers.ack = setTimeout(() => {
      this.timers.ack = 0;
      if (this.ackDue && this.#send({ t: "ack", n: this.ackDue })) this.stats.acks++;
      this.ackDue = 0;
    }, 1250 / (this.world?.hz || 20)); // a tick, and some timer jitter
  }

  #onSnapshot(snap) {
    this.stats.snaps++;
    this.latest = snap;
    this.buffer.push(snap);
    this.clock.fromStamp(snap.st);
    const me = snap.players.get(this.id);
    if (me && this.world) {
      const ack = snap.ack ?? 0;
      this.pending = this.pending.filter((i) => i.seq > ack);
      let pos = { x: me.x, y: me.y };
      for (const i of this.pending) pos = stepPosition(pos, i.dx, i.dy, this.world);
      this.predicted = pos;
    }
    this.#emit("snap", snap);
  }

  #log(entry) {
    this.chatLog.push(entry);
    if (this.chatLog.length > 200) this.chatLog.shift();
    this.#emit("chat", entry);
  }

  #sendPing() {
    this.#send({ t: "ping", ts: performance.now() });
  }

  /**
   * Sends a movement intent and applies it to the predicted position. Call
   * it once per tick (at `world.hz`) while the player steers; the server
   * keeps applying the newest input, so send (0, 0) to stop.
   *
   * @param {number} dx in [-1, 1]
   * @param {number} dy in [-1, 1]
   * @returns {number} the input's seq, or 0 when not connected
   */
  input(dx, dy) {
    if (this.connection.state !== "connected") return 0;
    [dx, dy] = clampUnit(dx, dy);
    const seq = ++this.seq;
    const msg = { t: "input", seq, dx, dy };
    if (this.ackDue) msg.n = this.ackDue; // the pending delta acknowledgement rides along
    if (!this.#send(msg)) return 0;
    if (msg.n) {
      this.ackDue = 0;
      this.stats.inputAcks++;
      clearTimeout(this.timers.ack); // the next snapshot gets a full window
      this.timers.ack = 0;
    }
    this.pending.push({ seq, dx, dy });
    if (this.pending.length > 4 * this.world.hz) this.pending.shift();
    if (this.predicted) this.predicted = stepPosition(this.predicted, dx, dy, this.world);
    return seq;
  }

  /**
   * Sends a chat line to the room; it comes back as a `chat` event.
   * @param {string} text 1-280 characters
   * @returns {boolean} whether it was sent
   */
  chat(text) {
    text = String(text).trim().slice(0, 280);
    if (!text) return false;
    this.lastTypingSent = 0;
    return this.#send({ t: "chat", text });
  }

  /**
   * Tells the room this player is typing. Call it on every keystroke; it
   * sends at most one `typing` every 2 s.
   * @returns {boolean} whether a message was sent
   */
  typing() {
    const now = Date.now();
    if (now - this.lastTypingSent < 2000) return false;
    if (!this.#send({ t: "typing" })) return false;
    this.lastTypingSent = now;
    return true;
  }

  /**
   * Names of the other players typing now.
   * @returns {string[]}
   */
  typers() {
    const now = Date.now();
    const out = [];
    for (const [id, until] of this.typingUntil) {
      if (until > now) out.push(this.names.get(id) ?? `#${id}`);
      else this.typingUntil.delete(id);
    }
    return out;
  }

  /** The server's clock now, Unix ms (estimated). */
  serverNow() {
    return this.clock.serverNow();
  }

  /** The estimated offset of the server's clock from this one, ms. */
  get clockOffset() {
    return this.clock.offset;
  }

  /**
   * What to draw now: every player interpolated about two ticks in the
   * past, this player at its predicted position, and the newest orbs.
   * @returns {{players: Map<number, PlayerState>, orbs: {id: number, x: number, y: number}[], me: number|null}}
   */
  view() {
    const hz = this.world?.hz ?? 30;
    const players = new Map(this.buffer.sample(this.serverNow() - 2000 / hz));
    const me = this.latest?.players.get(this.id);
    if (me && this.predicted) players.set(this.id, { ...me, ...this.predicted });
    return { players, orbs: this.latest?.orbs ?? [], me: this.id };
  }

  /** Leaves the room (the seat is given up) and closes the connection. */
  leave() {
    this.closing = "left";
    clearTimeout(this.timers.retry);
    if (!this.#send({ t: "leave" })) {
      this.ws?.close();
      this.#setConnection({ state: "closed", reason: "left", attempt: 0 });
    }
  }

  /**
   * Drops the connection without leaving: the server holds the seat for a
   * grace period. No reconnection follows.
   */
  close() {
    this.closing = "closed";
    clearTimeout(this.timers.retry);
    clearInterval(this.timers.ping);
    this.ws?.close();
    if (!this.ws) this.#setConnection({ state: "closed", reason: "closed", attempt: 0 });
  }
}

/**
 * Joins a room and returns the connecting client. With several nodes, a
 * room hosted by another node is joined there by itself (the server's
 * `moved` answer is followed once); the client's `node` says where it
 * plays.
 *
 * @param {ConstructorParameters<typeof GameClient>[0]} options
 * @returns {GameClient}
 */
export function join(options) {
  const c = new GameClient(options);
  c.connect();
  return c;
}

const FEED_EVENTS = ["room", "snap", "joined", "left", "chat", "closed"];

/**
 * A read-only view of a room through its spectator feed: Server-Sent
 * Events, or HTTP long-poll. With transport "auto" it uses SSE and falls
 * back to long-poll by itself when SSE fails; either way it resumes from
 * the last event id it saw, so no chat or join/leave is lost or repeated.
 *
 * Events: `state` (ConnectionState, state "connected" while live),
 * `transport` ("sse" | "poll"), `room`, `snap` (Snapshot), `joined`,
 * `left`, `chat` (ChatEntry), `closed` ({reason}).
 */
export class Spectator extends EventTarget {
  /**
   * @param {object} options
   * @param {string} options.room room id
   * @param {"auto"|"sse"|"poll"} [options.transport] (auto)
   * @param {string} [options.server] server origin (default: this page's)
   * @param {string} [options.token] JWT when the server requires one
   * @param {number} [options.pollTimeout] long-poll wait, s (25)
   * @param {number} [options.sseFailures] SSE errors in a row before "auto"
   *   falls back to long-poll (3)
   */
  constructor({ room, transport = "auto", server, token, pollTimeout = 25, sseFailures = 3 }) {
    super();
    this.room = room;
    this.mode = transport;
    this.server = server;
    this.token = token;
    this.pollTimeout = pollTimeout;
    this.maxSSEFailures = sseFailures;
    /** Transport in use: "sse" or "poll". */
    this.transport = transport === "poll" ? "poll" : "sse";
    /** Id of the last event received, null before the first. */
    this.lastEventId = null;
    /** @type {ConnectionState} */
    this.connection = { state: "idle", attempt: 0 };
    /** Room info from the `room` event: {id, hz, w, h}. */
    this.info = null;
    /** The arena for renderers: {w, h, r, hz}. */
    this.world = null;
    /** @type {Map<number, string>} */
    this.names = new Map();
    /** @type {Snapshot|null} */
    this.latest = null;
    this.buffer = new SnapshotBuffer();
    /** @type {ChatEntry[]} */
    this.chatLog = [];
    /** Events received, by type. */
    this.counts = Object.fromEntries(FEED_EVENTS.map((t) => [t, 0]));
    /** Times the transport changed or a stream was reopened. */
    this.reconnects = 0;
    this.clock = new Clock();
    this.es = null;
    this.abort = null;
    this.sseErrors = 0;
    this.stopped = false;
    this.retry = 0;
  }

  /** Starts receiving; `spectate()` calls it for you. */
  start() {
    if (this.transport === "sse") this.#openSSE();
    else this.#pollLoop();
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  #setConnection(c) {
    this.connection = { attempt: this.connection.attempt, ...c };
    this.#emit("state", this.connection);
  }

  #feedURL(kind) {
    const u = new URL(`/rooms/${encodeURIComponent(this.room)}/${kind}`, httpBase(this.server));
    if (this.token) u.searchParams.set("token", this.token);
    return u;
  }

  #openSSE() {
    const u = this.#feedURL("events");
    if (this.lastEventId !== null) u.searchParams.set("lastEventId", String(this.lastEventId));
    this.#setConnection({ state: this.lastEventId === null ? "connecting" : "reconnecting", reason: this.connection.reason });
    const es = new EventSource(u);
    this.es = es;
    for (const type of FEED_EVENTS) {
      es.addEventListener(type, (e) => {
        if (this.es !== es) return;
        this.sseErrors = 0;
        this.#onEvent(Number(e.lastEventId), type, JSON.parse(e.data));
      });
    }
    es.onopen = () => {
      if (this.es !== es) return;
      this.#setConnection({ state: "connected", attempt: 0 });
    };
    es.onerror = () => {
      if (this.es !== es) return;
      this.sseErrors++;
      const closed = es.readyState === EventSource.CLOSED;
      if (this.mode === "auto" && (closed || this.sseErrors >= this.maxSSEFailures)) {
        // An EventSource that got an error status on reconnect stays closed
        // for good; long-poll carries the same events and ids.
        es.close();
        this.es = null;
        this.reconnects++;
        this.transport = "poll";
        this.#emit("transport", "poll");
        this.#pollLoop();
      } else if (closed) {
        es.close();
        this.es = null;
        const delay = backoffDelay(this.retry++);
        this.#setConnection({ state: "reconnecting", reason: "stream failed", retryAt: Date.now() + delay });
        setTimeout(() => !this.stopped && this.#openSSE(), delay);
      } else {
        // The browser reconnects by itself with Last-Event-ID.
        this.reconnects++;
        this.#setConnection({ state: "reconnecting", reason: "stream dropped" });
      }
    };
  }

  async #pollLoop() {
    this.abort = new AbortController();
    const signal = this.abort.signal;
    let attempt = 0;
    while (!this.stopped && this.transport === "poll") {
      const u = this.#feedURL("poll");
      if (this.lastEventId !== null) u.searchParams.set("after", String(this.lastEventId));
      u.searchParams.set("timeout", String(this.pollTimeout));
      try {
        const res = await fetch(u, { cache: "no-store", signal });
        if (res.status === 404 || res.status === 410) {
          this.#finish(res.status === 404 ? "room not found" : "room has ended");
          return;
        }
        if (!res.ok) throw new Error(await readError(res));
        const body = await res.json();
        if (this.connection.state !== "connected") this.#setConnection({ state: "connected", attempt: 0 });
        attempt = 0;
        for (const ev of body.events ?? []) this.#onEvent(ev.id, ev.type, ev.data);
        if (Number.isInteger(body.last) && (this.lastEventId === null || body.last > this.lastEventId)) {
          this.lastEventId = body.last;
        }
      } catch (err) {
        if (this.stopped) return;
        const delay = backoffDelay(attempt++);
        this.reconnects++;
        this.#setConnection({ state: "reconnecting", reason: String(err?.message ?? err), retryAt: Date.now() + delay, attempt });
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  #onEvent(id, type, data) {
    if (this.lastEventId !== null && id <= this.lastEventId && type !== "room") return; // seen already
    if (Number.isInteger(id)) this.lastEventId = id;
    this.counts[type] = (this.counts[type] ?? 0) + 1;
    switch (type) {
      case "room":
        this.info = data;
        this.world = { w: data.w, h: data.h, r: 16, hz: data.hz };
        this.names = new Map((data.players ?? []).map((p) => [p.id, p.name]));
        this.buffer.clear();
        return this.#emit("room", data);
      case "snap": {
        const snap = decodeSnap(data, this.names);
        this.latest = snap;
        this.buffer.push(snap);
        this.clock.fromStamp(snap.st);
        return this.#emit("snap", snap);
      }
      case "joined":
        this.names.set(data.id, data.name);
        this.#log({ kind: "joined", id: data.id, name: data.name, text: `${data.name} joined`, st: Date.now() });
        return this.#emit("joined", data);
      case "left": {
        const name = this.names.get(data.id) ?? `#${data.id}`;
        this.names.delete(data.id);
        this.#log({ kind: "left", id: data.id, name, text: `${name} left (${data.reason})`, st: Date.now() });
        return this.#emit("left", { ...data, name });
      }
      case "chat":
        this.#log({ kind: "chat", id: data.id, name: data.name, text: data.text, st: data.st });
        return;
      case "closed":
        this.#finish(data.reason || "room closed");
        return;
      default:
      // unknown event types are ignored
    }
  }

  #log(entry) {
    this.chatLog.push(entry);
    if (this.chatLog.length > 200) this.chatLog.shift();
    this.#emit("chat", entry);
  }

  #finish(reason) {
    this.#stop();
    this.#setConnection({ state: "closed", reason });
    this.#emit("closed", { reason });
  }

  #stop() {
    this.stopped = true;
    this.es?.close();
    this.es = null;
    this.abort?.abort();
  }

  /** Stops the feed. */
  close() {
    this.#stop();
    this.#setConnection({ state: "closed", reason: "closed" });
  }

  /** The server's clock now, Unix ms (estimated from the snapshots). */
  serverNow() {
    return this.clock.serverNow();
  }

  /**
   * What to draw now: players interpolated about two snapshot intervals in
   * the past, and the newest orbs.
   * @returns {{players: Map<number, PlayerState>, orbs: {id: number, x: number, y: number}[], me: null}}
   */
  view() {
    const players = this.buffer.sample(this.serverNow() - 2 * this.buffer.interval);
    return { players, orbs: this.latest?.orbs ?? [], me: null };
  }
}

/**
 * Opens a room's spectator feed and returns the running view.
 *
 * @param {ConstructorParameters<typeof Spectator>[0]} options
 * @returns {Spectator}
 */
export function spectate(options) {
  const s = new Spectator(options);
  s.start();
  return s;
}

/**
 * A remote participant of a call.
 * @typedef {object} CallPeer
 * @property {string} id
 * @property {string} name
 * @property {boolean} polite whether this side gives way in a glare
 * @property {RTCPeerConnectionState} state
 * @property {string} channel DataChannel state ("none" until one exists)
 * @property {number} connectMs ms from first contact to connected, 0 until then
 * @property {number} openMs ms from first contact to an open DataChannel, 0 until then
 */

/**
 * A voice call over WebRTC, signaled on /ws/signal: microphone audio to
 * every peer, and a DataChannel per peer for text.
 *
 * Negotiation is "perfect negotiation": the newcomer offers to each peer
 * in its welcome; when offers collide, the side whose id sorts lower is
 * polite and rolls its offer back, the other ignores the colliding offer.
 * Remote ICE candidates are held until the remote description is set.
 *
 * Events: `state` (ConnectionState), `welcome` ({id}), `peers` (CallPeer[]),
 * `message` ({from, name, text}), `error` ({message}).
 */
export class Call extends EventTarget {
  /**
   * @param {object} options
   * @param {string} options.call call id (a game room's call uses the room id)
   * @param {string} options.name display name
   * @param {string} [options.server] server origin (default: this page's)
   * @param {string} [options.token] JWT when the server requires one
   * @param {boolean} [options.audio] send microphone audio (true)
   * @param {string} [options.channel] DataChannel label ("chat")
   */
  constructor({ call, name, server, token, audio = true, channel = "chat" }) {
    super();
    this.call = call;
    this.name = name;
    this.server = server;
    this.token = token;
    this.audio = audio;
    this.label = channel;
    /** This peer's id, null before the welcome. */
    this.id = null;
    /** @type {ConnectionState} */
    this.connection = { state: "idle", attempt: 0 };
    /** @type {Map<string, PeerLink>} */
    this.links = new Map();
    /** The microphone stream, when `audio` is on and allowed. */
    this.stream = null;
    this.muted = false;
    /** DataChannel messages sent and received, oldest first. */
    this.messages = [];
    this.iceServers = [];
    /** Names of peers that joined and have not offered yet. */
    this.names = new Map();
    this.ws = null;
  }

  /** Gets the microphone (when asked to) and joins the call. */
  async start() {
    this.#setConnection({ state: "connecting" });
    if (this.audio) {
      try {
        this.stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
      } catch (err) {
        this.fail(`microphone: ${err.message}`);
      }
    }
    let ws;
    try {
      ws = new WebSocket(wsURL(this.server, "/ws/signal"));
    } catch (err) {
      this.fail(err.message);
      this.#setConnection({ state: "closed", reason: err.message });
      return;
    }
    this.ws = ws;
    ws.onopen = () => this.signal({ type: "join", call: this.call, name: this.name, token: this.token });
    ws.onmessage = (e) => {
      let m;
      try {
        m = JSON.parse(e.data);
      } catch {
        return;
      }
      this.#onSignal(m).catch((err) => this.fail(`signal ${m?.type}: ${err.message}`));
    };
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.#setConnection({ state: "closed", reason: this.connection.reason ?? (e.reason || CLOSE_REASONS[e.code] || `code ${e.code}`) });
    };
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  #setConnection(c) {
    this.connection = { attempt: 0, ...c };
    this.#emit("state", this.connection);
  }

  /** @ignore Reports a problem as an `error` event (used by the peer connections). */
  fail(message) {
    this.#emit("error", { message });
  }

  /** @ignore Sends a message on the signaling WebSocket (used by the peer connections). */
  signal(m) {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(m));
  }

  async #onSignal(m) {
    switch (m.type) {
      case "welcome":
        this.id = m.id;
        this.iceServers = m.iceServers ?? [];
        this.#setConnection({ state: "connected" });
        this.#emit("welcome", { id: m.id });
        for (const p of m.peers ?? []) this.#link(p.id, p.name, true);
        return;
      case "peer-joined":
        // The newcomer offers; its connection starts with that offer.
        this.names.set(m.id, m.name);
        return;
      case "peer-left":
        this.names.delete(m.id);
        this.links.get(m.id)?.close();
        this.links.delete(m.id);
        this.changed();
        return;
      case "offer":
      case "answer":
        return (this.links.get(m.from) ?? this.#link(m.from, this.names.get(m.from) ?? "", false)).onDescription(m.type, m.sdp);
      case "ice-candidate":
        return this.links.get(m.from)?.onCandidate(m.candidate);
      case "error":
        if (["unauthorized", "call-full", "bad-message"].includes(m.code)) {
          this.connection.reason = m.message || m.code;
        }
        this.fail(`${m.code}: ${m.message}`);
        return;
      default:
      // unknown types are ignored
    }
  }

  #link(id, name, offerer) {
    let l = this.links.get(id);
    if (!l) {
      l = new PeerLink(this, id, name, offerer);
      this.links.set(id, l);
      this.changed();
    } else if (name) {
      l.name = name;
    }
    return l;
  }

  /** @ignore Announces a change of the peers (used by the peer connections). */
  changed() {
    this.#emit("peers", this.peers());
  }

  /** @returns {CallPeer[]} the remote peers and their states, by id */
  peers() {
    return [...this.links.values()].sort((a, b) => (a.id < b.id ? -1 : 1)).map((l) => l.info());
  }

  /**
   * Sends a text to every peer with an open DataChannel.
   * @param {string} text
   * @returns {number} peers it was sent to
   */
  send(text) {
    let n = 0;
    for (const l of this.links.values()) if (l.send(text)) n++;
    if (n > 0) this.record({ dir: "out", from: this.id, name: this.name, text });
    return n;
  }

  /** @ignore Keeps a DataChannel message (used by the peer connections). */
  record(m) {
    this.messages.push({ ...m, at: Date.now() });
    if (this.messages.length > 200) this.messages.shift();
    if (m.dir === "in") this.#emit("message", m);
  }

  /**
   * Mutes or unmutes the microphone (the track keeps running, silent).
   * @param {boolean} muted
   */
  setMuted(muted) {
    this.muted = muted;
    for (const t of this.stream?.getAudioTracks() ?? []) t.enabled = !muted;
  }

  /** Leaves the call, closes every connection and stops the microphone. */
  leave() {
    this.signal({ type: "leave" });
    const ws = this.ws;
    this.ws = null;
    ws?.close(1000);
    for (const l of this.links.values()) l.close();
    this.links.clear();
    for (const t of this.stream?.getTracks() ?? []) t.stop();
    this.#setConnection({ state: "closed", reason: "left" });
    this.changed();
  }
}

/** The connection to one remote peer of a Call. */
class PeerLink {
  constructor(call, id, name, offerer) {
    this.call = call;
    this.id = id;
    this.name = name;
    // Ids are ASCII, so string order is byte order.
    this.polite = call.id < id;
    this.start = performance.now();
    this.connectMs = 0;
    this.openMs = 0;
    this.makingOffer = false;
    this.offering = null;
    this.ignoreOffer = false;
    this.negotiated = false; // a remote description has been applied once
    this.pendingCandidates = [];
    this.channels = new Set();
    this.audioEl = null;
    this.pc = this.newPC();
    // The offerer opens the channel, which also starts the negotiation.
    if (offerer) this.watch(this.pc.createDataChannel(call.label));
  }

  /** A PeerConnection with the microphone; events of replaced ones are ignored. */
  newPC() {
    const call = this.call;
    const pc = new RTCPeerConnection({ iceServers: call.iceServers });
    const current = () => this.pc === pc;
    for (const t of call.stream?.getTracks() ?? []) pc.addTrack(t, call.stream);
    pc.onnegotiationneeded = () => current() && this.offer();
    pc.onicecandidate = ({ candidate }) => {
      if (current()) call.signal({ type: "ice-candidate", to: this.id, candidate: candidate ? candidate.toJSON() : null });
    };
    pc.onconnectionstatechange = () => {
      if (!current()) return;
      if (pc.connectionState === "connected" && !this.connectMs) this.connectMs = performance.now() - this.start;
      call.changed();
    };
    pc.ondatachannel = (e) => current() && this.watch(e.channel);
    pc.ontrack = (e) => current() && this.play(e.streams[0] ?? new MediaStream([e.track]));
    return pc;
  }

  offer() {
    const pc = this.pc;
    this.offering = (async () => {
      try {
        this.makingOffer = true;
        await pc.setLocalDescription();
        if (this.pc === pc) this.call.signal({ type: pc.localDescription.type, to: this.id, sdp: pc.localDescription.sdp });
      } catch (err) {
        if (this.pc === pc) this.call.fail(`offer to ${this.id}: ${err.message}`);
      } finally {
        this.makingOffer = false;
      }
    })();
  }

  async onDescription(type, sdp) {
    let pc = this.pc;
    const collision = type === "offer" && (this.makingOffer || pc.signalingState !== "stable");
    this.ignoreOffer = !this.polite && collision;
    if (this.ignoreOffer) return;
    if (type === "answer" && pc.signalingState !== "have-local-offer") return; // stale
    if (collision) {
      // The polite side gives way. In the first negotiation it answers on a
      // fresh PeerConnection: Chromium rolls the offer back, but then often
      // gathers no ICE candidates for the answer. Later it rolls back.
      await this.offering;
      if (!this.negotiated) {
        for (const dc of this.channels) dc.close();
        this.channels.clear();
        const old = pc;
        pc = this.pc = this.newPC();
        old.close();
      } else if (pc.signalingState === "have-local-offer") {
        await pc.setLocalDescription({ type: "rollback" });
      }
    }
    await pc.setRemoteDescription({ type, sdp });
    this.negotiated = true;
    for (const c of this.pendingCandidates.splice(0)) await this.addCandidate(c);
    if (type === "offer") {
      await pc.setLocalDescription();
      this.call.signal({ type: pc.localDescription.type, to: this.id, sdp: pc.localDescription.sdp });
    }
  }

  async onCandidate(candidate) {
    if (!candidate?.candidate) return; // end of candidates
    if (!this.pc.remoteDescription) {
      if (this.pendingCandidates.length < 256) this.pendingCandidates.push(candidate);
      return;
    }
    await this.addCandidate(candidate);
  }

  async addCandidate(c) {
    try {
      await this.pc.addIceCandidate(c);
    } catch (err) {
      if (!this.ignoreOffer) this.call.fail(`candidate from ${this.id}: ${err.message}`);
    }
  }

  watch(dc) {
    this.channels.add(dc);
    dc.onopen = () => {
      if (!this.openMs) this.openMs = performance.now() - this.start;
      this.call.changed();
    };
    dc.onclose = () => {
      this.channels.delete(dc);
      this.call.changed();
    };
    dc.onmessage = async (e) => {
      const text = typeof e.data === "string" ? e.data : new TextDecoder().decode(e.data instanceof Blob ? await e.data.arrayBuffer() : e.data);
      this.call.record({ dir: "in", from: this.id, name: this.name, text });
    };
  }

  openChannel() {
    for (const dc of this.channels) if (dc.readyState === "open") return dc;
    return null;
  }

  send(text) {
    const dc = this.openChannel();
    if (!dc) return false;
    dc.send(text);
    return true;
  }

  play(stream) {
    if (!this.audioEl) {
      this.audioEl = new Audio();
      this.audioEl.autoplay = true;
    }
    if (this.audioEl.srcObject !== stream) {
      this.audioEl.srcObject = stream;
      this.audioEl.play().catch(() => {
        // autoplay may be refused until the user interacts; audio then
        // starts with the next interaction.
      });
    }
  }

  info() {
    const dc = this.openChannel() ?? [...this.channels][0];
    return {
      id: this.id,
      name: this.name,
      polite: this.polite,
      state: this.pc.connectionState,
      channel: dc ? dc.readyState : "none",
      connectMs: Math.round(this.connectMs),
      openMs: Math.round(this.openMs),
    };
  }

  close() {
    for (const dc of this.channels) dc.close();
    this.pc.close();
    if (this.audioEl) this.audioEl.srcObject = null;
  }
}

/**
 * Joins a voice call and returns it; the microphone is requested first.
 *
 * @param {ConstructorParameters<typeof Call>[0]} options
 * @returns {Call}
 */
export function joinCall(options) {
  const c = new Call(options);
  c.start();
  return c;
}
