// Package metrics exposes Tickwire's Prometheus metrics: counters and
// histograms fed by hooks on the hot paths, and gauges read from the
// server's parts when scraped.
//
// A Metrics is safe for concurrent use.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics is one server's registry.
type Metrics struct {
	reg          *prometheus.Registry
	tickDuration prometheus.Histogram
	overruns     prometheus.Counter
	rtt          prometheus.Histogram
	rejections   *prometheus.CounterVec
}

// New returns a registry with the Go runtime and process collectors.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		tickDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tickwire_tick_duration_seconds",
			Help:    "Time a room takes for one tick: inputs, step, snapshot encoding and fan-out.",
			Buckets: prometheus.ExponentialBuckets(1e-6, 2.5, 14), // 1µs .. 150ms
		}),
		overruns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tickwire_tick_overruns_total",
			Help: "Ticks that took longer than their period.",
		}),
		rtt: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tickwire_rtt_seconds",
			Help:    "Round trips of players' WebSocket pings.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14), // 0.5ms .. 4s
		}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tickwire_rejections_total",
			Help: "Requests, joins and messages refused, and clients sent away, by reason.",
		}, []string{"reason"}),
	}
	reg.MustRegister(m.tickDuration, m.overruns, m.rtt, m.rejections,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Tick records one room tick.
func (m *Metrics) Tick(d time.Duration, overrun bool) {
	m.tickDuration.Observe(d.Seconds())
	if overrun {
		m.overruns.Inc()
	}
}

// RTT records a player's round-trip sample.
func (m *Metrics) RTT(d time.Duration) { m.rtt.Observe(d.Seconds()) }

// Reject counts a refusal for reason.
func (m *Metrics) Reject(reason string) { m.rejections.WithLabelValues(reason).Inc() }

// Gauge registers a gauge read from fn at each scrape.
func (m *Metrics) Gauge(name, help string, fn func() float64) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, fn))
}

// Counter registers a counter read from fn at each scrape.
func (m *Metrics) Counter(name, help string, fn func() float64) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, fn))
}

// ByLabel registers a metric with one label whose values are read from fn
// at each scrape; fn returns the value of each label value.
func (m *Metrics) ByLabel(name, help, label string, kind prometheus.ValueType, fn func() map[string]float64) {
	m.reg.MustRegister(&labelled{desc: prometheus.NewDesc(name, help, []string{label}, nil), kind: kind, fn: fn})
}

// labelled is a collector for ByLabel.
type labelled struct {
	desc *prometheus.Desc
	kind prometheus.ValueType
	fn   func() map[string]float64
}

func (l *labelled) Describe(ch chan<- *prometheus.Desc) { ch <- l.desc }

func (l *labelled) Collect(ch chan<- prometheus.Metric) {
	for value, v := range l.fn() {
		ch <- prometheus.MustNewConstMetric(l.desc, l.kind, v, value)
	}
}
