package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
)

// Row is one figure of a report: its value in each run and their median.
type Row struct {
	Figure  string    `json:"figure"`
	Unit    string    `json:"unit,omitempty"`
	Runs    []float64 `json:"runs"`
	Median  float64   `json:"median"`
	Target  string    `json:"target,omitempty"`  // e.g. "<= 3"
	Verdict string    `json:"verdict,omitempty"` // "met", "missed by ..."
	Seed    string    `json:"seed,omitempty"`    // the seed document's estimate
}

// MarshalJSON writes figures that were not measured as null.
func (r Row) MarshalJSON() ([]byte, error) {
	type plain Row
	nullable := func(v float64) *float64 {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil
		}
		return &v
	}
	runs := make([]*float64, len(r.Runs))
	for i, v := range r.Runs {
		runs[i] = nullable(v)
	}
	return json.Marshal(struct {
		plain
		Runs   []*float64 `json:"runs"`
		Median *float64   `json:"median"`
	}{plain(r), runs, nullable(r.Median)})
}

// Table is a titled set of rows.
type Table struct {
	Title string   `json:"title"`
	Notes []string `json:"notes,omitempty"`
	Rows  []Row    `json:"rows"`
}

// Goal is a target a figure must meet.
type Goal struct {
	Max   bool    // the figure must be at most Value (else at least)
	Value float64 //
}

func (g Goal) String() string {
	if g.Max {
		return "<= " + num(g.Value)
	}
	return ">= " + num(g.Value)
}

// verdict says whether v meets g, or by how much it misses.
func (g Goal) verdict(v float64) string {
	if math.IsNaN(v) {
		return "not measured"
	}
	if g.Max && v <= g.Value || !g.Max && v >= g.Value {
		return "met"
	}
	diff := math.Abs(v - g.Value)
	return fmt.Sprintf("missed by %s (%.0f%%)", num(diff), 100*diff/math.Abs(g.Value))
}

// NaN marks a figure that was not measured.
var NaN = math.NaN()

// row builds a Row from per-run values, NaN where a run lacks the figure.
func row(figure, unit string, runs []float64, goal *Goal) Row {
	r := Row{Figure: figure, Unit: unit, Runs: runs}
	var have []float64
	for _, v := range runs {
		if !math.IsNaN(v) {
			have = append(have, v)
		}
	}
	r.Median = NaN
	if len(have) > 0 {
		r.Median = round3(Median(have))
	}
	if goal != nil {
		r.Target = goal.String()
		r.Verdict = goal.verdict(r.Median)
	}
	return r
}

// num formats a figure compactly.
func num(v float64) string {
	switch a := math.Abs(v); {
	case math.IsNaN(v):
		return "n/a"
	case a >= 100 || v == math.Trunc(v) && a < 1e15:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.3f", v)
}

// Write prints the table as aligned text.
func (t *Table) Write(w io.Writer) {
	fmt.Fprintln(w, t.Title)
	for _, n := range t.Notes {
		fmt.Fprintln(w, "  "+n)
	}
	seed, goals, multi := false, false, false
	for _, r := range t.Rows {
		seed = seed || r.Seed != ""
		goals = goals || r.Target != ""
		multi = multi || len(r.Runs) > 1
	}
	head := []string{"figure", "median", "unit"}
	if multi {
		head = append(head, "runs")
	}
	if seed {
		head = append(head, "seed estimate")
	}
	if goals {
		head = append(head, "target", "verdict")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, r := range t.Rows {
		cells := []string{r.Figure, num(r.Median), r.Unit}
		if multi {
			vs := make([]string, len(r.Runs))
			for i, v := range r.Runs {
				vs[i] = num(v)
			}
			cells = append(cells, strings.Join(vs, " "))
		}
		if seed {
			cells = append(cells, r.Seed)
		}
		if goals {
			cells = append(cells, r.Target, r.Verdict)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	tw.Flush()
	fmt.Fprintln(w)
}

// pick returns f of every run, NaN where f reports no value.
func pick[T any](runs []T, f func(T) (float64, bool)) []float64 {
	out := make([]float64, len(runs))
	for i, r := range runs {
		v, ok := f(r)
		if !ok {
			v = NaN
		}
		out[i] = v
	}
	return out
}

func val(v float64) (float64, bool) { return v, true }

func ptr(p *float64) (float64, bool) {
	if p == nil {
		return 0, false
	}
	return *p, true
}

// GameTable is the report of several runs of `bench game`. With reference
// set, the targets of the reference workload are judged.
func GameTable(runs []*GameResult, reference bool) *Table {
	if len(runs) == 0 {
		return &Table{Title: "bench game: no runs"}
	}
	r0 := runs[0]
	g := func(max bool, v float64) *Goal {
		if !reference {
			return nil
		}
		return &Goal{Max: max, Value: v}
	}
	mode := "full snapshots"
	if r0.Delta {
		mode = "delta snapshots"
	}
	if r0.RTC {
		mode += " over WebRTC"
		if r0.RTCInputsOnWebSocket {
			mode += " (inputs on the WebSocket)"
		}
	}
	if r0.Mode != "" {
		mode = r0.Mode + ", " + mode
	}
	t := &Table{Title: fmt.Sprintf("bench game: %d players in %d rooms, %d Hz, inputs %d/s, %s, window %.0fs, %d run(s)",
		r0.Players, r0.Rooms, r0.Hz, r0.InputHz, mode, r0.WindowSec, len(runs))}
	if r0.TickSource != "" {
		t.Notes = append(t.Notes, "tick duration from "+r0.TickSource)
	}
	t.Rows = []Row{
		row("ticks run / nominal", "%", pick(runs, func(r *GameResult) (float64, bool) { return val(r.TicksPct) }), g(false, 99.9)),
		row("snapshots delivered / ticks run", "%", pick(runs, func(r *GameResult) (float64, bool) { return val(r.DeliveredPct) }), nil),
		row("tick duration p50", "ms", pick(runs, func(r *GameResult) (float64, bool) { return distOf(r.Tick, 50) }), nil),
		row("tick duration p99", "ms", pick(runs, func(r *GameResult) (float64, bool) { return distOf(r.Tick, 99) }), nil),
		row("update gap p50", "ms", pick(runs, func(r *GameResult) (float64, bool) { return val(r.Gap.P50) }), nil),
		row("update gap p99", "ms", pick(runs, func(r *GameResult) (float64, bool) { return val(r.Gap.P99) }), g(true, 55)),
		row("delivery latency p50", "ms", pick(runs, func(r *GameResult) (float64, bool) { return val(r.Latency.P50) }), nil),
		row("delivery latency p99", "ms", pick(runs, func(r *GameResult) (float64, bool) { return val(r.Latency.P99) }), g(true, 3)),
		row("delivery latency max", "ms", pick(runs, func(r *GameResult) (float64, bool) { return val(r.Latency.Max) }), nil),
		row("  at socket arrival: latency p50", "ms", pick(runs, func(r *GameResult) (float64, bool) { return r.LatencyRx.P50, r.LatencyRx.N > 0 }), nil),
		row("  at socket arrival: latency p99", "ms", pick(runs, func(r *GameResult) (float64, bool) { return r.LatencyRx.P99, r.LatencyRx.N > 0 }), nil),
		row("  at socket arrival: update gap p99", "ms", pick(runs, func(r *GameResult) (float64, bool) { return r.GapRx.P99, r.GapRx.N > 0 }), nil),
		row("bytes in per client", "B/s", pick(runs, func(r *GameResult) (float64, bool) { return val(r.BytesInPerClient) }), nil),
		row("bytes out per client", "B/s", pick(runs, func(r *GameResult) (float64, bool) { return val(r.BytesOutPerClient) }), nil),
		row("messages in per client", "1/s", pick(runs, func(r *GameResult) (float64, bool) { return val(r.MsgsInPerClient) }), nil),
		row("messages out per client", "1/s", pick(runs, func(r *GameResult) (float64, bool) { return val(r.MsgsOutPerClient) }), nil),
		row("server CPU", "% of a core", pick(runs, func(r *GameResult) (float64, bool) { return ptr(r.ServerCPUPct) }), g(true, 32)),
		row("server RSS growth per player", "KiB", pick(runs, func(r *GameResult) (float64, bool) {
			v, ok := ptr(r.ServerRSSPerPlayer)
			return v / 1024, ok
		}), g(true, 16)),
		row("server RSS at end", "MiB", pick(runs, func(r *GameResult) (float64, bool) {
			return float64(r.ServerRSSAfter) / (1 << 20), r.ServerRSSAfter > 0
		}), nil),
		row("bots dropped", "", pick(runs, func(r *GameResult) (float64, bool) { return val(float64(r.Dropped)) }), nil),
		row("baseline: load process CPU", "% of a core", pick(runs, func(r *GameResult) (float64, bool) { return val(r.LoadCPUPct) }), nil),
		row("baseline: load process 5 ms sleep lateness p99", "ms", pick(runs, func(r *GameResult) (float64, bool) { return val(r.LoadLag.P99) }), nil),
	}
	if r0.RTC {
		t.Rows = slices.Insert(t.Rows, 2,
			row("snapshots on the state channel", "%", pick(runs, func(r *GameResult) (float64, bool) { return r.ChannelPct, true }), nil),
			row("inputs sent on the state channel", "%", pick(runs, func(r *GameResult) (float64, bool) { return r.InputsOnChannelPct, true }), nil))
	}
	return t
}

func distOf(d *Dist, p int) (float64, bool) {
	if d == nil {
		return 0, false
	}
	if p == 50 {
		return d.P50, true
	}
	return d.P99, true
}

// FeedsTable reports runs of `bench feeds`, by transport.
func FeedsTable(byTransport map[string][]*FeedsResult) *Table {
	t := &Table{Title: "bench feeds: spectators of rooms with moving, chatting bots"}
	for _, kind := range []string{"sse", "poll"} {
		runs := byTransport[kind]
		if len(runs) == 0 {
			continue
		}
		r0 := runs[0]
		name := map[string]string{"sse": "SSE", "poll": "long-poll"}[kind]
		t.Notes = append(t.Notes, fmt.Sprintf("%s: %d viewers over %d rooms, window %.0fs, %d run(s)", name, r0.Viewers, r0.Rooms, r0.WindowSec, len(runs)))
		p := name + ": "
		t.Rows = append(t.Rows,
			row(p+"delivery latency p50", "ms", pick(runs, func(r *FeedsResult) (float64, bool) { return val(r.Latency.P50) }), nil),
			row(p+"delivery latency p99", "ms", pick(runs, func(r *FeedsResult) (float64, bool) { return val(r.Latency.P99) }), nil),
			row(p+"  snap p99", "ms", pick(runs, func(r *FeedsResult) (float64, bool) { return val(r.LatencySnap.P99) }), nil),
			row(p+"  chat p99", "ms", pick(runs, func(r *FeedsResult) (float64, bool) { return val(r.LatencyChat.P99) }), nil),
			row(p+"bytes per viewer (in)", "B/s", pick(runs, func(r *FeedsResult) (float64, bool) { return val(r.BytesInPerViewer) }), nil),
			row(p+"bytes per viewer (both ways)", "B/s", pick(runs, func(r *FeedsResult) (float64, bool) { return val(r.BytesPerViewer) }), nil),
			row(p+"events per viewer", "1/s", pick(runs, func(r *FeedsResult) (float64, bool) { return val(r.EventsPerViewer) }), nil),
			row(p+"requests per viewer", "1/s", pick(runs, func(r *FeedsResult) (float64, bool) { return val(r.RequestsPerViewer) }), nil),
			row(p+"chat lines missed", "", pick(runs, func(r *FeedsResult) (float64, bool) { return val(float64(r.ChatsLost)) }), nil),
			row(p+"server RSS per viewer", "KiB", pick(runs, func(r *FeedsResult) (float64, bool) {
				v, ok := ptr(r.ServerRSSPerViewer)
				return v / 1024, ok
			}), nil),
			row(p+"server CPU", "% of a core", pick(runs, func(r *FeedsResult) (float64, bool) { return ptr(r.ServerCPUPct) }), nil),
			row(p+"baseline: load process CPU", "% of a core", pick(runs, func(r *FeedsResult) (float64, bool) { return val(r.LoadCPUPct) }), nil),
			row(p+"baseline: load 5 ms sleep lateness p99", "ms", pick(runs, func(r *FeedsResult) (float64, bool) { return val(r.LoadLag.P99) }), nil),
		)
	}
	return t
}

// Seed estimates of the transports comparison ("성능 비교" in
// websocket-sse-long-polling.md), for 100 messages and 1,000 connections.
var seedTransports = map[string]map[string]string{
	"websocket": {"requests": "1 (initial connection)", "bytes": "2-14 B of frame header per message, <= 1.4 KB", "latency": "avg 5, min 1, max 20 (example)", "memory": "~30 KB"},
	"sse":       {"requests": "1 (initial connection)", "bytes": "~500 B of headers once", "latency": "avg 20, min 5, max 100 (example)", "memory": "~50 KB"},
	"long-poll": {"requests": "100", "bytes": "~500 B of headers x 100 = 50 KB", "latency": "avg 150, min 50, max 30000 (example)", "memory": "~100 KB"},
}

// TransportsTable reports `bench transports`: the message runs and the
// idle-memory runs, beside the seed's estimates.
func TransportsTable(runs []*TransportsResult, idle map[string][]*IdleResult, headers string) *Table {
	t := &Table{Title: "bench transports: the same chat lines over WebSocket, SSE and long-poll, beside the seed's estimates"}
	if len(runs) > 0 {
		t.Notes = append(t.Notes, fmt.Sprintf("%d messages, %d run(s); bytes counted at the client's sockets, TCP payload (HTTP and frame headers included, IP/TCP headers not); %s",
			runs[0].Messages, len(runs), headers))
	}
	names := map[string]string{"websocket": "WebSocket", "sse": "SSE", "long-poll": "long-poll"}
	for _, kind := range []string{"websocket", "sse", "long-poll"} {
		fig := func(f func(TransportFigures) float64) []float64 {
			return pick(runs, func(r *TransportsResult) (float64, bool) {
				for _, x := range r.Figures {
					if x.Transport == kind {
						return f(x), true
					}
				}
				return 0, false
			})
		}
		p := names[kind] + ": "
		seed := seedTransports[kind]
		with := func(r Row, s string) Row { r.Seed = s; return r }
		if len(runs) > 0 {
			t.Rows = append(t.Rows,
				with(row(p+"messages received", "", fig(func(x TransportFigures) float64 { return float64(x.Received) }), nil), ""),
				with(row(p+"requests made (opening included)", "", fig(func(x TransportFigures) float64 { return float64(x.Requests) }), nil), seed["requests"]),
				with(row(p+"bytes in (server to client)", "B", fig(func(x TransportFigures) float64 { return float64(x.BytesIn) }), nil), seed["bytes"]),
				row(p+"bytes out (client to server)", "B", fig(func(x TransportFigures) float64 { return float64(x.BytesOut) }), nil),
				row(p+"bytes per message, both ways", "B", fig(func(x TransportFigures) float64 {
					return float64(x.BytesIn+x.BytesOut) / float64(max(x.Received, 1))
				}), nil),
				row(p+"opening bytes, both ways", "B", fig(func(x TransportFigures) float64 { return float64(x.SetupIn + x.SetupOut) }), nil),
				row(p+"total bytes, opening included", "B", fig(func(x TransportFigures) float64 {
					return float64(x.SetupIn + x.SetupOut + x.BytesIn + x.BytesOut)
				}), nil),
				with(row(p+"latency p50", "ms", fig(func(x TransportFigures) float64 { return x.Latency.P50 }), nil), seed["latency"]),
				row(p+"latency p99", "ms", fig(func(x TransportFigures) float64 { return x.Latency.P99 }), nil),
				row(p+"latency max", "ms", fig(func(x TransportFigures) float64 { return x.Latency.Max }), nil),
			)
		}
		if ir := idle[kind]; len(ir) > 0 {
			var goal *Goal
			switch kind {
			case "sse":
				goal = &Goal{Max: true, Value: 8}
			case "long-poll":
				goal = &Goal{Max: true, Value: 6}
			}
			r := row(fmt.Sprintf("%sserver RSS per connection, %d idle", p, ir[0].Conns), "KiB",
				pick(ir, func(r *IdleResult) (float64, bool) { return r.RSSPerConn / 1024, true }), goal)
			r.Seed = seed["memory"]
			t.Rows = append(t.Rows, r)
			t.Notes = append(t.Notes, names[kind]+" idle connections: "+ir[0].Description)
		}
	}
	return t
}

// SignalingTable reports runs of `bench signaling`.
func SignalingTable(runs []*SignalingResult) *Table {
	if len(runs) == 0 {
		return &Table{Title: "bench signaling: no runs"}
	}
	t := &Table{Title: fmt.Sprintf("bench signaling: %d peer pairs connecting at once (Pion, loopback host candidates, no audio), %d run(s)", runs[0].Pairs, len(runs))}
	t.Rows = []Row{
		row("pairs open", "", pick(runs, func(r *SignalingResult) (float64, bool) { return val(float64(r.Opened)) }), nil),
		row("time to DataChannel open p50", "ms", pick(runs, func(r *SignalingResult) (float64, bool) { return val(r.Open.P50) }), nil),
		row("time to DataChannel open p99", "ms", pick(runs, func(r *SignalingResult) (float64, bool) { return val(r.Open.P99) }), nil),
		row("time to DataChannel open max", "ms", pick(runs, func(r *SignalingResult) (float64, bool) { return val(r.Open.Max) }), nil),
		row("signaling join p50", "ms", pick(runs, func(r *SignalingResult) (float64, bool) { return val(r.Join.P50) }), nil),
		row("signaling join p99", "ms", pick(runs, func(r *SignalingResult) (float64, bool) { return val(r.Join.P99) }), nil),
	}
	return t
}
