package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"go.uber.org/goleak"

	"github.com/tickwire/tickwire/clients/player"
	"github.com/tickwire/tickwire/server"
	"github.com/tickwire/tickwire/wire"
)

// chromiumPath is where Debian's chromium package puts the browser.
const chromiumPath = "/usr/bin/chromium"

// wait bounds every wait for the page or a Go client; the operations take
// well under a second, so this only matters when something is broken.
const wait = 15 * time.Second

// The one browser of the test binary, started by the first test that needs
// it and closed by TestMain.
var browser struct {
	once   sync.Once
	ctx    context.Context
	cancel func()
	dir    string
	err    error
	launch time.Duration
}

func TestMain(m *testing.M) {
	code := m.Run()
	closeBrowser()
	http.DefaultClient.CloseIdleConnections()
	if code == 0 {
		// Everything a test started (servers, clients, Pion peers, the
		// browser and chromedp's readers) must have ended.
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines left after the tests:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// needBrowser returns the shared browser's context, starting it on first
// use. Without Chromium the test is skipped, or fails when
// TICKWIRE_REQUIRE_BROWSER=1.
func needBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("TICKWIRE_REQUIRE_BROWSER") == "1" {
			t.Fatalf("TICKWIRE_REQUIRE_BROWSER=1 but %s is missing (apt-get install chromium, or make browser)", chromiumPath)
		}
		t.Skipf("%s not installed; set TICKWIRE_REQUIRE_BROWSER=1 to make this a failure", chromiumPath)
	}
	browser.once.Do(startBrowser)
	if browser.err != nil {
		t.Fatalf("starting chromium: %v", browser.err)
	}
	return browser.ctx
}

func startBrowser() {
	dir, err := os.MkdirTemp("", "tickwire-chromium-")
	if err != nil {
		browser.err = err
		return
	}
	browser.dir = dir
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.UserDataDir(filepath.Join(dir, "profile")),
		// Chromium writes to $HOME and $TMPDIR whatever the profile dir.
		chromedp.Env("HOME="+dir, "TMPDIR="+dir),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		// WebRTC between the page and Pion peers on 127.0.0.1, with host
		// candidates that are real addresses rather than mDNS names.
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.Flag("disable-features", "Translate,BlinkGenPropertyTrees,WebRtcHideLocalIpsWithMdns"),
		// A fake microphone, granted without a prompt.
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.WindowSize(1360, 900),
	)
	allocCtx, allocCancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	start := time.Now()
	// The first Do starts the browser; it must not have a timeout.
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		allocCancel()
		browser.err = err
		return
	}
	browser.launch = time.Since(start)
	browser.ctx = ctx
	browser.cancel = func() {
		ctx, done := context.WithTimeout(ctx, 10*time.Second)
		defer done()
		_ = chromedp.Cancel(ctx)
		cancel()
		allocCancel()
	}
}

func closeBrowser() {
	if browser.cancel != nil {
		browser.cancel()
	}
	if browser.dir != "" {
		_ = os.RemoveAll(browser.dir)
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// env is a Tickwire server on loopback with the browser client mounted at
// "/", the way `tickwire serve` serves it.
type env struct {
	srv  *server.Server
	hs   *httptest.Server // what the browser uses
	url  string           // http://127.0.0.1:port
	bots *httptest.Server // a second listener for Go clients, so dropping the browser's connections spares them
	ln   *trackingListener

	sseDown atomic.Bool // answer 503 to SSE requests, to make EventSource fail

	mu    sync.Mutex // guards feeds
	feeds []string   // the request URIs of the browser's spectator feeds, in order
}

// feedRequests returns the request URIs (path and query) of the spectator
// feeds (/rooms/{room}/events and /poll) the browser asked for so far.
func (e *env) feedRequests() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.feeds)
}

func startEnv(t *testing.T, cfg server.Config) *env {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet()
	}
	// Chromium and the race detector make ticks late without the server
	// being past its capacity: no refusals for overload here.
	cfg.NoOverload = true
	e := &env{srv: server.New(cfg)}
	api := e.srv.Handler()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/rooms/") && (strings.HasSuffix(r.URL.Path, "/events") || strings.HasSuffix(r.URL.Path, "/poll")) {
			e.mu.Lock()
			e.feeds = append(e.feeds, r.URL.RequestURI())
			e.mu.Unlock()
		}
		if e.sseDown.Load() && strings.HasSuffix(r.URL.Path, "/events") {
			http.Error(w, "down for the test", http.StatusServiceUnavailable)
			return
		}
		api.ServeHTTP(w, r)
	})
	e.hs = httptest.NewUnstartedServer(h)
	e.ln = &trackingListener{Listener: e.hs.Listener, conns: make(map[net.Conn]struct{})}
	e.hs.Listener = e.ln
	e.hs.Start()
	e.bots = httptest.NewServer(api)
	e.url = e.hs.URL
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.srv.Shutdown(ctx); err != nil {
			t.Errorf("server shutdown: %v", err)
		}
		e.hs.Close()
		e.bots.Close()
	})
	return e
}

// dropBrowserConns closes every connection the browser has open to the
// server, WebSockets included (httptest's CloseClientConnections leaves
// hijacked connections alone).
func (e *env) dropBrowserConns() { e.ln.closeAll() }

// join connects a Go player through the bots' listener and closes it when
// the test ends.
func (e *env) join(t *testing.T, name, room string) *player.Client {
	t.Helper()
	return e.joinMode(t, name, room, "")
}

// joinMode is join with a game mode for room "auto" ("": the default).
func (e *env) joinMode(t *testing.T, name, room, mode string) *player.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, err := player.Dial(ctx, player.Options{URL: "ws" + strings.TrimPrefix(e.bots.URL, "http") + "/ws/play", Name: name, Room: room, Mode: mode})
	if err != nil {
		t.Fatalf("join %s to %s: %v", name, room, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// steer sends the input (dx, dy) at 30 Hz until the returned func is
// called.
func steer(c *player.Client, dx, dy float64) (stop func()) {
	return steerBy(c, func(time.Duration) []float64 { return []float64{dx, dy} })
}

// circle steers c around in circles, so that it never rests against a
// wall; the mode's other input fields stay 0.
func circle(c *player.Client, phase float64) (stop func()) {
	return steerBy(c, func(d time.Duration) []float64 {
		a := phase + 2*d.Seconds()
		return []float64{math.Cos(a), math.Sin(a)}
	})
}

// steerBy sends the input fields in(time since start), in the mode's
// order, at 30 Hz until the returned func is called, then all zeros.
func steerBy(c *player.Client, in func(time.Duration) []float64) (stop func()) {
	done := make(chan struct{})
	ended := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(ended)
		tick := time.NewTicker(time.Second / 30)
		defer tick.Stop()
		for {
			if _, err := c.Input(in(time.Since(start))...); err != nil {
				return
			}
			select {
			case <-done:
				_, _ = c.Input()
				return
			case <-tick.C:
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); <-ended }) }
}

// row returns the row with the given id of a table in c's newest
// snapshot, by column name, or nil.
func row(c *player.Client, table string, id uint32) map[string]float64 {
	s, sc := c.Latest(), c.Schema()
	if s == nil || sc == nil {
		return nil
	}
	return rowByName(sc, table, s.Table(table).Find(id))
}

// rowByName names the values of a row of a table of sc; nil for a nil row.
func rowByName(sc *wire.Schema, table string, values []float64) map[string]float64 {
	ti := sc.Table(table)
	if values == nil || ti < 0 {
		return nil
	}
	out := make(map[string]float64, len(values))
	for i, name := range sc.Tables[ti].ColumnNames() {
		if i < len(values) {
			out[name] = values[i]
		}
	}
	return out
}

// rows returns every row of a table in c's newest snapshot, by column name.
func rows(c *player.Client, table string) []map[string]float64 {
	s, sc := c.Latest(), c.Schema()
	if s == nil || sc == nil {
		return nil
	}
	var out []map[string]float64
	for _, r := range s.Table(table) {
		out = append(out, rowByName(sc, table, r))
	}
	return out
}

// awaitMsg returns the first message of type T from c that ok accepts.
func awaitMsg[T wire.ServerMessage](t *testing.T, c *player.Client, what string, ok func(T) bool) T {
	t.Helper()
	timeout := time.After(wait)
	for {
		select {
		case m, open := <-c.Messages():
			if !open {
				var zero T
				t.Fatalf("%s: connection ended: %v", what, c.Err())
				return zero
			}
			if v, is := m.(T); is && (ok == nil || ok(v)) {
				return v
			}
		case <-timeout:
			var zero T
			t.Fatalf("%s: not within %v", what, wait)
			return zero
		}
	}
}

// drain discards c's queued messages so that later waits see new ones.
func drain(c *player.Client) {
	for {
		select {
		case <-c.Messages():
		default:
			return
		}
	}
}

// eventually polls cond until it holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(wait); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, wait)
		}
	}
}

// trackingListener remembers accepted connections so a test can drop them
// all, hijacked ones included.
type trackingListener struct {
	net.Listener
	mu    sync.Mutex // guards conns
	conns map[net.Conn]struct{}
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.conns[c] = struct{}{}
	l.mu.Unlock()
	return &trackedConn{Conn: c, l: l}, nil
}

func (l *trackingListener) closeAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		_ = c.Close()
		delete(l.conns, c)
	}
}

type trackedConn struct {
	net.Conn
	l *trackingListener
}

func (c *trackedConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.conns, c.Conn)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

// tab is one browser tab. Console errors and uncaught exceptions are
// collected and fail the test when it ends.
type tab struct {
	t   *testing.T
	ctx context.Context

	mu       sync.Mutex // guards problems and logs
	problems []string
	logs     []string
}

func newTab(t *testing.T) *tab {
	t.Helper()
	bctx := needBrowser(t)
	tb := &tab{t: t}
	ctx, cancel := chromedp.NewContext(bctx, chromedp.WithListener(tb.listen))
	tb.ctx = ctx
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		t.Fatalf("open tab: %v", err)
	}
	t.Cleanup(func() {
		tb.mu.Lock()
		problems := tb.problems
		tb.mu.Unlock()
		for _, p := range problems {
			t.Errorf("browser console: %s", p)
		}
		if t.Failed() {
			tb.mu.Lock()
			for _, l := range tb.logs {
				t.Logf("console: %s", l)
			}
			tb.mu.Unlock()
		}
		ctx, done := context.WithTimeout(ctx, 5*time.Second)
		defer done()
		_ = chromedp.Cancel(ctx)
		cancel()
	})
	return tb
}

// listen runs on chromedp's reader goroutine: it only records.
func (tb *tab) listen(ev any) {
	var problem, log string
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		var parts []string
		for _, a := range ev.Args {
			if len(a.Value) > 0 {
				parts = append(parts, string(a.Value))
			} else {
				parts = append(parts, a.Description)
			}
		}
		log = string(ev.Type) + ": " + strings.Join(parts, " ")
		if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
			problem = log
		}
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		problem = fmt.Sprintf("uncaught exception: %s", d.Text)
		if d.Exception != nil {
			problem += " " + d.Exception.Description
		}
		problem += fmt.Sprintf(" at %s:%d:%d", d.URL, d.LineNumber+1, d.ColumnNumber+1)
		log = problem
	default:
		return
	}
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.logs = append(tb.logs, log)
	if problem != "" {
		tb.problems = append(tb.problems, problem)
	}
}

// do runs actions on the tab with a timeout.
func (tb *tab) do(actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, wait)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		tb.t.Fatalf("browser: %v", err)
	}
}

func (tb *tab) navigate(url string) { tb.t.Helper(); tb.do(chromedp.Navigate(url)) }

// eval evaluates a JavaScript expression and decodes its JSON value.
func eval[T any](tb *tab, expr string) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, wait)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		tb.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// state reads window.tickwire.state().
func (tb *tab) state() pageState {
	tb.t.Helper()
	return eval[pageState](tb, `window.tickwire ? window.tickwire.state() : {}`)
}

// waitState polls the page's state until cond holds, and returns it.
func (tb *tab) waitState(what string, cond func(s pageState) bool) pageState {
	tb.t.Helper()
	return waitFor(tb, what, wait, tb.state, cond, func(s pageState) string {
		js, _ := json.MarshalIndent(s, "", "  ")
		return "page state:\n" + string(js)
	})
}

// waitFor reads something of the page with read every 25 ms until cond
// holds, and returns it; after d it fails the test with what it read last,
// as show writes it.
func waitFor[T any](tb *tab, what string, d time.Duration, read func() T, cond func(T) bool, show func(T) string) T {
	tb.t.Helper()
	for deadline := time.Now().Add(d); ; time.Sleep(25 * time.Millisecond) {
		v := read()
		if cond(v) {
			return v
		}
		if time.Now().After(deadline) {
			tb.t.Fatalf("%s: not within %v; %s", what, d, show(v))
		}
	}
}

// text returns the text of the element matching a CSS selector.
func (tb *tab) text(sel string) string {
	tb.t.Helper()
	return eval[string](tb, fmt.Sprintf(`document.querySelector(%q)?.textContent ?? ""`, sel))
}

// waitHUD waits until the HUD's text satisfies ok: the page draws it with
// the next animation frame, which a loaded machine runs late.
func (tb *tab) waitHUD(what string, ok func(hud string) bool) {
	tb.t.Helper()
	waitFor(tb, "the HUD says "+what, wait, func() string { return tb.text("#hud") }, ok,
		func(hud string) string { return fmt.Sprintf("HUD %q", hud) })
}

// holdKey presses a key, holds it for d and releases it, as a user would.
func (tb *tab) holdKey(key rune, d time.Duration) {
	tb.t.Helper()
	release := tb.pressKey(key)
	time.Sleep(d)
	release()
}

// pressKey presses a key and returns the function that releases it.
func (tb *tab) pressKey(key rune) (release func()) {
	tb.t.Helper()
	events := kb.Encode(key)
	down, up := events[0], events[len(events)-1]
	dispatch := func(e *input.DispatchKeyEventParams) {
		tb.do(chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := cdp.Call(ctx, t, input.DispatchKeyEvent, *e)
			return err
		}))
	}
	dispatch(down)
	return func() {
		tb.t.Helper()
		dispatch(up)
	}
}

// pageState is what window.tickwire.state() returns.
type pageState struct {
	View     string     `json:"view"`
	Errors   []string   `json:"errors"`
	Rooms    []roomInfo `json:"rooms"`
	Modes    []string   `json:"modes"`
	Renderer string     `json:"renderer"` // of the newest frame drawn
	Game     *struct {
		Connection connState   `json:"connection"`
		ID         uint32      `json:"id"`
		Room       string      `json:"room"`
		Mode       string      `json:"mode"`
		Schema     *pageSchema `json:"schema"`
		World      *struct {
			W, H, R, Speed float64
			Hz             int
		} `json:"world"`
		Tick        uint64                 `json:"tick"`
		Ack         uint64                 `json:"ack"`
		Players     map[string]playerState `json:"players"`
		PlayerTable string                 `json:"playerTable"`
		Tables      map[string][]pageRow   `json:"tables"`
		Predicted   *struct {
			X float64 `json:"x"`
			Y float64 `json:"y"`
		} `json:"predicted"`
		Pending     int                `json:"pending"`
		LastInput   map[string]float64 `json:"lastInput"`
		Ping        *float64           `json:"ping"`
		Jitter      *float64           `json:"jitter"`
		ClockOffset *float64           `json:"clockOffset"`
		Chat        []chatEntry        `json:"chat"`
		Typing      []string           `json:"typing"`
	} `json:"game"`
	Spectator *struct {
		Connection  connState              `json:"connection"`
		Transport   string                 `json:"transport"`
		LastEventID *int64                 `json:"lastEventId"`
		Mode        string                 `json:"mode"`
		Schema      *pageSchema            `json:"schema"`
		Tick        uint64                 `json:"tick"`
		Players     map[string]playerState `json:"players"`
		Tables      map[string][]pageRow   `json:"tables"`
		Chat        []chatEntry            `json:"chat"`
		Counts      map[string]int         `json:"counts"`
		Reconnects  int                    `json:"reconnects"`
		Delay       int                    `json:"delay"`
	} `json:"spectator"`
	Call *struct {
		Connection connState `json:"connection"`
		ID         string    `json:"id"`
		Muted      bool      `json:"muted"`
		Microphone bool      `json:"microphone"`
		Peers      []struct {
			ID        string `json:"id"`
			Name      string `json:"name"`
			Polite    bool   `json:"polite"`
			State     string `json:"state"`
			Channel   string `json:"channel"`
			ConnectMs int    `json:"connectMs"`
			OpenMs    int    `json:"openMs"`
		} `json:"peers"`
		Messages []struct {
			Dir  string `json:"dir"`
			From string `json:"from"`
			Text string `json:"text"`
		} `json:"messages"`
	} `json:"call"`
}

type roomInfo struct {
	ID      string `json:"id"`
	Mode    string `json:"mode"`
	Players int    `json:"players"`
}

// pageSchema is a schema as the page's state shows it.
type pageSchema struct {
	Input  []string            `json:"input"`
	Tables map[string][]string `json:"tables"`
}

// pageRow is a row of a table as the page holds it: values by column name
// (the player table's rows also carry a "name", which is dropped here).
type pageRow map[string]float64

func (r *pageRow) UnmarshalJSON(b []byte) error {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*r = pageRow{}
	for k, v := range m {
		if f, ok := v.(float64); ok {
			(*r)[k] = f
		}
	}
	return nil
}

// find returns the row with the given id, or nil.
func findRow(rows []pageRow, id uint32) pageRow {
	for _, r := range rows {
		if r["id"] == float64(id) {
			return r
		}
	}
	return nil
}

type connState struct {
	State  string `json:"state"`
	Reason string `json:"reason"`
}

type playerState struct {
	Name  string  `json:"name"`
	X     float64 `json:"x"`
	Y     float64 `json:"y"`
	Score int     `json:"score"`
	RTT   int     `json:"rtt"`
}

type chatEntry struct {
	Kind string `json:"kind"`
	ID   uint32 `json:"id"`
	Name string `json:"name"`
	Text string `json:"text"`
}

// chatTexts lists the texts of the chat lines (not notices) in order.
func chatTexts(log []chatEntry) []string {
	var out []string
	for _, m := range log {
		if m.Kind == "chat" {
			out = append(out, m.Name+": "+m.Text)
		}
	}
	return out
}

func hasEntry(log []chatEntry, kind, text string) bool {
	for _, m := range log {
		if m.Kind == kind && strings.Contains(m.Text, text) {
			return true
		}
	}
	return false
}

// getJSON fetches url and decodes its JSON body.
func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, res.Status)
	}
	if err := json.NewDecoder(res.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// postJSON posts body to url, expects 201 and decodes the answer.
func postJSON(t *testing.T, url, body string, v any) {
	t.Helper()
	res, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("POST %s: %s", url, res.Status)
	}
	if err := json.NewDecoder(res.Body).Decode(v); err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
}

// steerPage holds the key that moves the page's player (id, at x) towards
// the middle of an arena w wide, as a user would, waits until bot sees it
// move that way, and returns the way (+1 right, -1 left).
func steerPage(t *testing.T, tb *tab, bot *player.Client, id uint32, x, w float64) (sign float64) {
	t.Helper()
	key, sign := 'd', 1.0
	if x > w/2 {
		key, sign = 'a', -1
	}
	tb.do(chromedp.Click(chromedp.CSS("#canvas")))
	// Held until the bot sees the move: a loaded machine may give the page
	// few frames, and so few inputs, in a fixed time.
	release := tb.pressKey(key)
	eventually(t, "the page's input seen by the bot", func() bool {
		p := row(bot, "p", id)
		return p != nil && sign*(p["x"]-x) > 100
	})
	release()
	return sign
}

// expectResumed checks that a page that reconnected took its seat back: a
// chat line from bot reaches it, and until the bot's own line comes back
// the bot saw nobody leave or join.
func expectResumed(t *testing.T, tb *tab, bot *player.Client) {
	t.Helper()
	if err := bot.Chat("still there?"); err != nil {
		t.Fatal(err)
	}
	tb.waitState("chat after the reconnect", func(s pageState) bool { return hasEntry(s.Game.Chat, "chat", "still there?") })
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m := <-bot.Messages():
			switch m := m.(type) {
			case *wire.Left:
				t.Errorf("bot got %+v after a resume", m)
			case *wire.Joined:
				t.Errorf("bot got %+v after a resume", m)
			case *wire.ChatLine:
				if m.Text == "still there?" {
					return
				}
			}
		case <-timeout:
			t.Fatal("bot did not get its own chat line back")
		}
	}
}
